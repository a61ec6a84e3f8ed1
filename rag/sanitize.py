"""Documents' own content is not trusted: what it may make the browser or the model do.

- ``safe_markdown`` (and ``safe_label`` for names): a Markdown image in a passage, a
  heading or an answer would make the browser fetch its URL (a tracking beacon, or text
  smuggled out in the URL). Images become plain links, which show their text and fetch
  nothing unless clicked.
- ``prompt_text``: a model's special tokens (``<|im_start|>``, ``[INST]``, ``<s>`` ...)
  written in a document would let it open a fake system turn in the prompt. They are
  replaced with look-alike characters that no tokenizer reads as special.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # Chainlit renders GitHub-flavoured Markdown: tables and strikethrough on top of CommonMark.
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _image_lines(text: str) -> set[int]:
    """Line numbers of the inline content holding an image, as markdown-it parses it."""
    lines: set[int] = set()
    for token in _parser().parse(text):
        if (
            token.type == "inline"
            and token.map
            and any(child.type == "image" for child in token.children or ())
        ):
            lines.update(range(*token.map))
    return lines


# `![` not already escaped: preceded by an even number of backslashes.
_IMAGE_START = re.compile(r"(?<!\\)((?:\\\\)*)!\[")


def safe_markdown(text: str) -> str:
    """The text with every Markdown image turned into a link to the same place."""
    if "![" not in text:
        return text  # the common case, and streamed answers check every token
    text = text.replace("\r\n", "\n")
    for _ in range(3):
        lines = _image_lines(text)
        if not lines:
            return text
        # Escaping the `!` leaves `[text](url)`: a link, shown as its text.
        rows = text.split("\n")
        for n in lines:
            rows[n] = _IMAGE_START.sub(r"\1\\![", rows[n])
        text = "\n".join(rows)
    return _plain(text)  # a construct escaping did not undo: drop all formatting


def streamed(text: str, delta: str) -> tuple[str, bool]:
    """What to send on as ``delta`` arrives and ``text`` (the answer so far) grows,
    and whether it replaces everything shown so far. Once an image has begun, the
    browser would fetch it as it streams, so the whole text is resent, made safe."""
    if "![" in text:
        return safe_markdown(text), True
    return delta, False


def safe_label(text: str) -> str:
    """A one-line name (file, heading path) shown as plain words: an image keeps its alt
    text. Chainlit links a source by finding its name in the answer, so names carry no
    Markdown that would render differently from how they are written."""
    if "![" not in text and "](" not in text:
        return text
    words = []
    for token in _parser().parseInline(text):
        for child in token.children or ():
            if child.type in ("text", "code_inline", "image"):
                words.append(child.content)  # an image's content is its alt text
            elif child.type in ("softbreak", "hardbreak"):
                words.append(" ")
    return safe_markdown("".join(words))


def _plain(text: str) -> str:
    words = []
    for token in _parser().parse(text):
        for child in token.children or ():
            if child.type in ("text", "code_inline"):
                words.append(child.content)
            elif child.type == "image":
                words.append(child.content)  # its alt text
        if token.type in ("paragraph_close", "heading_close"):
            words.append("\n\n")
    return "".join(words).strip().replace("![", "!\u200b[")


# Role and turn markers of common chat templates: ChatML and its kin (<|...|>), Llama 2
# and Mistral ([INST], <<SYS>>, <s>), Gemma (<start_of_turn>), bare BOS/EOS names.
_SPECIAL = re.compile(
    r"<\|[^<>|\s]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>"
    r"|</?(?:bos|eos|pad|unk)>",
    re.IGNORECASE,
)
_LOOKALIKE = str.maketrans({"<": "\u2039", ">": "\u203a", "[": "\u27e6", "]": "\u27e7"})


def prompt_text(text: str) -> str:
    """Document text with model-facing special tokens made harmless (and still legible)."""
    return _SPECIAL.sub(lambda m: m.group().translate(_LOOKALIKE), text)
