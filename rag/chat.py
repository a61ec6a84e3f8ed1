"""One question, answered: retrieve, build the prompt, stream the model's answer.

The browser app, the CLI and any HTTP API call these functions; nothing here
knows how the answer is shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from rag import prompts, retrieval
from rag.chunks import Hit
from rag.config import Settings
from rag.models.base import ChatModel, Message


@dataclass
class Stats:
    retrieval_ms: float = 0.0
    first_token_s: float | None = None
    answer_s: float = 0.0
    answer_tokens: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        streaming = self.answer_s - (self.first_token_s or 0.0)
        return self.answer_tokens / streaming if self.answer_tokens > 1 and streaming > 0 else None


@dataclass
class Turn:
    """A question on its way to an answer; ``text`` grows as the answer streams."""

    question: str
    hits: list[Hit]
    messages: list[Message]
    model: str
    text: str = ""
    stopped: bool = False
    stats: Stats = field(default_factory=Stats)

    def sources(self) -> list[tuple[int, Hit]]:
        """The passages the answer cites, in citation order, numbered as in the prompt."""
        numbers = prompts.cited_numbers(self.text, len(self.hits))
        return [(n, self.hits[n - 1]) for n in numbers]


async def prepare(
    question: str,
    library: retrieval.Library,
    model: ChatModel,
    settings: Settings,
    history: Sequence[Message] = (),
) -> Turn:
    started = time.perf_counter()
    # Embedding and the Chroma query are blocking calls: keep them off the event loop.
    hits = await asyncio.to_thread(retrieval.search, library, question, settings.top_k)
    retrieval_ms = (time.perf_counter() - started) * 1000
    budget = model.context_window - settings.max_answer_tokens
    messages, kept = prompts.fit_to_budget(question, hits, history, budget, model.count_tokens)
    return Turn(question, kept, messages, model.name, stats=Stats(retrieval_ms=retrieval_ms))


async def stream_answer(turn: Turn, model: ChatModel, settings: Settings) -> AsyncIterator[str]:
    """Yield the answer's text deltas, recording the text and timings on ``turn``."""
    started = time.perf_counter()
    stream = model.stream(
        turn.messages, max_tokens=settings.max_answer_tokens, temperature=settings.temperature
    )
    try:
        async for delta in stream:
            if turn.stats.first_token_s is None:
                turn.stats.first_token_s = time.perf_counter() - started
            turn.text += delta
            yield delta
    except (asyncio.CancelledError, GeneratorExit):
        turn.stopped = True
        raise
    finally:
        await stream.aclose()
        turn.stats.answer_s = time.perf_counter() - started
        turn.stats.answer_tokens = model.count_tokens(turn.text) if turn.text else 0


async def ask(
    question: str,
    library: retrieval.Library,
    model: ChatModel,
    settings: Settings,
    history: Sequence[Message] = (),
) -> Turn:
    """The whole answer at once, for scripts and tests."""
    turn = await prepare(question, library, model, settings, history)
    async for _ in stream_answer(turn, model, settings):
        pass
    return turn
