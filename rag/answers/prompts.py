"""The words sent to the chat model, and reading citations back out of its answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.library.chunks import Hit
from rag.sanitize import prompt_text

SYSTEM = (
    "You are a helpful assistant that answers questions about the user's documents. "
    "Use only the numbered context passages. After each fact, cite its passage number "
    "in square brackets, like [1]. If the passages do not contain the answer, say that "
    "the documents do not say. Be concise."
)

GENERAL_SYSTEM = (
    "You are a helpful assistant. Answer from general knowledge, briefly, and say when "
    "you are not sure."
)

Message = dict[str, str]


def general_messages(question: str, history: Sequence[Message] = ()) -> list[Message]:
    """A prompt with no passages, for an answer that does not claim to come from them."""
    return [
        {"role": "system", "content": GENERAL_SYSTEM},
        *history,
        {"role": "user", "content": question},
    ]


def context_block(number: int, hit: Hit) -> str:
    # The label goes after the text: put first, small models answer with a list of
    # labels instead of the passage's words (tried on the sample documents).
    # A document's own special tokens must not open a turn of their own (SECURITY.md).
    text, label = prompt_text(hit.chunk.text.strip()), prompt_text(hit.chunk.label())
    return f"[{number}] {text}\n(from {label})"


def user_prompt(question: str, hits: Sequence[Hit]) -> str:
    blocks = "\n\n".join(context_block(n, h) for n, h in enumerate(hits, start=1))
    return f"Context passages:\n\n{blocks}\n\nQuestion: {question}"


def build_messages(
    question: str, hits: Sequence[Hit], history: Sequence[Message] = ()
) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM},
        *history,
        {"role": "user", "content": user_prompt(question, hits)},
    ]


def prompt_size(messages: Sequence[Message], count_tokens: Callable[[str], int]) -> int:
    """Tokens of a prompt, with a few per message for the chat template's role markers."""
    return sum(count_tokens(m["content"]) + 8 for m in messages)


def fit_to_budget(
    question: str,
    hits: Sequence[Hit],
    history: Sequence[Message],
    budget: int,
    count_tokens: Callable[[str], int],
) -> tuple[list[Message], list[Hit]]:
    """The fullest prompt within ``budget`` tokens, dropping the lowest-ranked chunks first."""
    kept = list(hits)
    while True:
        messages = build_messages(question, kept, history)
        if prompt_size(messages, count_tokens) <= budget or not kept:
            return messages, kept
        kept.pop()


_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def cited_numbers(answer: str, available: int) -> list[int]:
    """Passage numbers the answer cites, in order of first citation."""
    seen: list[int] = []
    for group in _MARKER.findall(answer):
        for part in re.split(r"[,;]", group):
            n = int(part)
            if 1 <= n <= available and n not in seen:
                seen.append(n)
    return seen
