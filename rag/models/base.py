"""What every chat model backend offers the chat pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

Message = dict[str, str]


class ChatModel(Protocol):
    name: str  # shown to the user, e.g. "phi-4-mini (Foundry Local)"
    context_window: int  # prompt plus answer, in the model's tokens
    local: bool  # True when the text never leaves this machine

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        """Text deltas of the answer. Closing the iterator (or cancelling the task
        that reads it) stops generation and frees the model for the next call."""
        ...


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate for servers whose tokenizer we cannot run."""
    return len(text) // 3 + 1
