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
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        """Text deltas of the answer. Closing the iterator (or cancelling the task
        that reads it) stops generation and frees the model for the next call.

        ``repetition_penalty`` (1 = none, above 1 makes repeated tokens less likely)
        is applied by backends that support it in some form and ignored by others."""
        ...


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate for servers whose tokenizer we cannot run."""
    return len(text) // 3 + 1


def frequency_penalty(repetition_penalty: float | None) -> float | None:
    """OpenAI's additive frequency penalty (-2..2) nearest a multiplicative repetition
    penalty: 1 is none for both, and 1.1 (a common setting) becomes 0.2."""
    if repetition_penalty is None:
        return None
    return max(-2.0, min(2.0, round(2.0 * (repetition_penalty - 1.0), 3)))


async def aclose(stream: AsyncIterator[str]) -> None:
    """Stop a model's stream before its end (Stop pressed, a stop sequence, a client
    gone): closing the generator is what frees the model."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
