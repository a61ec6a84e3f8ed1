"""Documents' own content is not trusted: what it may make the browser or the model do.

- ``safe_markdown`` (and ``safe_label`` for names): a Markdown image in a passage, a
  heading or an answer would make the browser fetch its URL (a tracking beacon, or text
  smuggled out in the URL). Images become plain links, which show their text and fetch
  nothing unless clicked.
- ``prompt_text``: a model's special tokens (``<|im_start|>``, ``[INST]``, ``<s>`` ...)
  written in a document would let it open a fake system turn in the prompt. They are
  replaced with look-alike characters that no tokenizer reads as special.
- ``terminal_text``: what the CLI prints. A file name or a document may hold terminal
  escape sequences (write the clipboard, set the window title, clear the screen, move
  the cursor to forge earlier output); they and every other control character except
  newline and tab are removed.
- ``MarkdownStream``: an answer ``rag serve`` streams to a client that renders Markdown
  (Open WebUI and the like), which cannot take back what it showed: images, and HTML
  tags that fetch, are escaped as the text passes, so they show as text.
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


# --- terminals ---------------------------------------------------------------------------

# ESC (or its one-byte C1 form) and what follows it: CSI sequences (cursor, colours, clear
# screen), string commands up to their terminator (OSC: title, clipboard, hyperlinks; DCS,
# SOS, PM, APC), and the two- or three-character escapes (reset, charset).
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]",
    re.DOTALL,
)
# C0 controls but tab and newline, DEL, C1 controls (a terminal may read U+009B as CSI).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS_BUT_CR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def terminal_text(text: str, keep_cr: bool = False) -> str:
    """Text safe to print to a terminal: escape sequences and control characters removed
    (``keep_cr`` keeps carriage returns, with which progress bars redraw their line)."""
    if text.isprintable():
        return text  # the common case: nothing to remove
    text = _ESCAPES.sub("", text)
    return (_CONTROLS_BUT_CR if keep_cr else _CONTROLS).sub("", text)


# --- Markdown clients of the API -------------------------------------------------------

# An image (`![`, not already escaped) or an HTML tag that makes a browser fetch.
_FETCHES = re.compile(
    r"(?<!\\)((?:\\\\)*)(!\[|<(?=(?:img|image|svg|picture|source|video|audio|track|iframe"
    r"|frame|object|embed|link|style|script|input|body|meta|base)\b))",
    re.IGNORECASE,
)
# An end that may begin one of those, with the backslashes before it, which decide
# whether it is escaped already.
_OPEN_END = re.compile(r"\\*(?:!|<[a-zA-Z]{0,8})?$")


class MarkdownStream:
    """Escapes Markdown images and fetching HTML tags in a text that streams: ``feed``
    each delta, then ``end``. A possible start of one at the end of a delta is held back
    until the next shows what it is. Escaped, ``![a](u)`` shows as ``!`` and a link, and
    ``<img ...>`` as its own text."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, delta: str) -> str:
        text = self._held + delta
        open_end = _OPEN_END.search(text)
        cut = open_end.start() if open_end else len(text)
        text, self._held = text[:cut], text[cut:]
        return _FETCHES.sub(r"\1\\\2", text)

    def end(self) -> str:
        text, self._held = self._held, ""
        return _FETCHES.sub(r"\1\\\2", text)
