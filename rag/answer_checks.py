"""What is checked around each answer: decoding that avoids loops, a guard that
stops one, the evidence sentences, and the sentences no passage supports.

The chat pipeline (rag/chat.py) calls these three functions and nothing else of
#13, so the checks stay in their own modules: rag/repetition.py,
rag/evidence.py and rag/grounding.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from rag import evidence, grounding, repetition
from rag.config import Settings

if TYPE_CHECKING:
    from rag.chat import Turn


def decoding(settings: Settings) -> dict:
    """Keyword arguments for ``ChatModel.stream`` beyond length and temperature."""
    penalty = settings.repetition_penalty
    return {"repetition_penalty": penalty} if penalty != 1.0 else {}


def guarded(turn: Turn, stream: AsyncIterator[str], settings: Settings) -> AsyncIterator[str]:
    """``stream``, stopped when the answer starts repeating itself; the turn then
    keeps the answer up to the repetition and is marked ``looped``."""
    if not settings.stop_loops:
        return stream

    def cut(guard: repetition.LoopGuard) -> None:
        turn.looped = True
        turn.text = guard.kept

    return repetition.stop_loops(stream, cut)


def evaluate(turn: Turn, settings: Settings) -> tuple[list, list]:
    """Evidence sentences and unsupported answer sentences (blocking: embeds)."""
    if turn.embedder is None or not turn.grounded or not turn.hits:
        return [], []
    found = evidence.best(turn.search_query or turn.question, turn.hits, turn.embedder,
                          settings.evidence_sentences)
    passages = turn.context or turn.hits
    marked = grounding.unsupported(turn.text, passages, turn.embedder,
                                   settings.unsupported_below)
    return found, marked


async def check(turn: Turn, settings: Settings) -> None:
    """Set ``turn.evidence`` and ``turn.unsupported`` once the answer is complete."""
    turn.evidence, turn.unsupported = await asyncio.to_thread(evaluate, turn, settings)
