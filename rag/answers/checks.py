"""What is checked around each answer: decoding that avoids loops, a guard that
stops one, the evidence sentences, and the sentences no passage supports.

The chat pipeline (rag/answers/answering.py) calls these three functions and nothing else of
#13, so the checks stay in their own modules: rag/answers/repetition.py,
rag/answers/evidence.py and rag/answers/grounding.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from rag.answers import evidence, grounding, prompts, repetition
from rag.answers.turn import Turn
from rag.config import Settings


def decoding(settings: Settings) -> dict:
    """Keyword arguments for ``ChatModel.stream`` beyond length and temperature. The
    penalty is sent even at 1 (none): servers differ in what they assume without it
    (llama-cpp-python's applies 1.1)."""
    return {"repetition_penalty": settings.repetition_penalty}


def guarded(turn: Turn, stream: AsyncIterator[str], settings: Settings) -> AsyncIterator[str]:
    """``stream``, stopped when the answer starts repeating itself; the turn then
    keeps the answer up to the repetition and is marked ``looped``."""
    if not settings.stop_loops:
        return stream

    def cut(guard: repetition.LoopGuard) -> None:
        turn.looped = True
        turn.text = guard.kept

    return repetition.stop_loops(stream, cut)


def _find_evidence(turn: Turn, settings: Settings) -> list:
    if turn.embedder is None or not turn.grounded or not turn.hits:
        return []
    return evidence.best(
        turn.search_query or turn.question,
        turn.hits,
        turn.embedder,
        max(settings.evidence_sentences, 1),
    )


async def find_evidence(turn: Turn, settings: Settings) -> None:
    """Set ``turn.evidence`` once the passages are retrieved (embeds off the loop)."""
    turn.evidence = await asyncio.to_thread(_find_evidence, turn, settings)


# A small model answers far more often right when the sentence that holds the answer
# is pointed out after the passages (benchmarks.answers: embedded model, see README).
EVIDENCE_NOTE = (
    '\n\nThe passages say: "{sentence}"\nAnswer the question in one sentence using these words.'
)


def evidence_note(turn: Turn, settings: Settings) -> str:
    """What to add to the prompt: the best evidence sentence, when the model is given
    the passage that holds it (so a private one never reaches a model off this machine)."""
    if not settings.evidence_in_prompt or not turn.evidence:
        return ""
    top = turn.evidence[0]
    if top.chunk_id not in {h.chunk.id for h in turn.context}:
        return ""
    return EVIDENCE_NOTE.format(sentence=" ".join(top.text.split()))


def point_to_evidence(
    turn: Turn, settings: Settings, count_tokens: Callable[[str], int], budget: int
) -> None:
    """Add the evidence note to the prompt's question if it still fits ``budget``."""
    note = evidence_note(turn, settings)
    if not note or not turn.messages:
        return
    if prompts.prompt_size(turn.messages, count_tokens) + count_tokens(note) <= budget:
        last = turn.messages[-1]
        turn.messages[-1] = {**last, "content": last["content"] + note}


def _unsupported(turn: Turn, settings: Settings) -> list:
    if turn.embedder is None or not turn.grounded or not turn.hits:
        return []
    return grounding.unsupported(
        turn.text, turn.context or turn.hits, turn.embedder, settings.unsupported_below
    )


async def check(turn: Turn, settings: Settings) -> None:
    """Set ``turn.unsupported`` (and keep the shown evidence to the setting's count)
    once the answer is complete."""
    turn.unsupported = await asyncio.to_thread(_unsupported, turn, settings)
    turn.evidence = turn.evidence[: settings.evidence_sentences]
