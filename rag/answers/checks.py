"""What is checked around each answer: decoding that avoids loops, a guard that
stops one, the evidence sentences, and the sentences no passage supports.

The chat pipeline (rag/answers/answering.py) calls these functions and nothing else of
#13 and #26, so the checks stay in their own modules: rag/answers/repetition.py,
rag/answers/evidence.py, rag/answers/grounding.py, rag/answers/contradictions.py
(sentences the evidence contradicts) and rag/answers/citations.py (citations
attributed after generation). All of them read one embedding of the answer's
sentences (grounding.judge).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from rag.answers import citations, contradictions, evidence, grounding, prompts, repetition
from rag.answers.turn import Turn
from rag.config import Settings
from rag.embeddings.embedder import Embedder
from rag.models.browser import BROWSER


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


def compared_with(found: list[evidence.Evidence]) -> list[contradictions.Sentence]:
    """The evidence sentences an answer is checked against: the best two."""
    return [contradictions.Sentence(e.text, e.source) for e in found[:2]]


@dataclass
class Checked:
    """What the checks found in one answer."""

    unsupported: list[grounding.Unsupported] = field(default_factory=list)
    contradicted: list[contradictions.Contradiction] = field(default_factory=list)
    citations: list[citations.Citation] = field(default_factory=list)
    claims: list[tuple[int, int]] = field(default_factory=list)  # sentences judged

    @property
    def unusable(self) -> bool:
        """No sentence of the answer is supported: nothing in it to rely on."""
        return not self.claims or len(self.unsupported) >= len(self.claims)


def checked(
    text: str,
    question: str,
    hits: list,
    found: list[evidence.Evidence],
    embedder: Embedder,
    threshold: float,
    context: list | None = None,
) -> Checked:
    """The sentences of ``text`` no passage supports, those the evidence contradicts,
    and each sentence's citation (blocking: embeds once). The benchmark calls this too."""
    judged = grounding.judge(text, hits, embedder)
    passage_text = "\n".join(h.chunk.text for h in hits)
    wrong = contradictions.find(text, question, judged, compared_with(found), passage_text)
    unsupported = grounding.unsupported(text, hits, embedder, threshold, judged)
    marked = {c.start for c in wrong} | {u.start for u in unsupported}
    cited = citations.attribute(text, judged, context or hits, marked)
    return Checked(unsupported, wrong, cited, [(j.start, j.end) for j in judged if j.reason])


# The built-in tiny model: its answers are right less often than the best evidence
# sentence (benchmarks.answers on the held-out set: 0.66 against 0.80), so with
# RAG_EVIDENCE_FIRST=auto the evidence always leads its answers.
SMALL_MODELS = frozenset({"embedded"})


def small_model(spec: str, settings: Settings) -> bool:
    """The built-in tiny model: on the server, or in the user's browser, whose model is
    the same weights unless RAG_BROWSER_MODEL names another (rag/models/browser.py)."""
    return spec in SMALL_MODELS or (spec == BROWSER and settings.browser_model is None)


def leads(result: Checked, has_evidence: bool, settings: Settings, spec: str = "") -> bool:
    """Whether the evidence sentence is shown first, above the model's answer."""
    mode = settings.evidence_first
    if mode == "auto":
        mode = "always" if small_model(spec, settings) else "checked"
    if not has_evidence or mode == "never":
        return False
    return mode == "always" or bool(result.contradicted) or result.unusable


def _checked(turn: Turn, settings: Settings) -> Checked:
    if turn.embedder is None or not turn.grounded or not turn.hits:
        return Checked()
    return checked(
        turn.text,
        turn.question,
        turn.context or turn.hits,
        turn.evidence,
        turn.embedder,
        settings.unsupported_below,
        turn.context,
    )


async def check(turn: Turn, settings: Settings) -> None:
    """Set the turn's checks (unsupported and contradicted sentences, citations, whether
    the evidence leads) and keep the shown evidence to the setting's count, once the
    answer is complete."""
    result = await asyncio.to_thread(_checked, turn, settings)
    turn.unsupported, turn.contradicted = result.unsupported, result.contradicted
    turn.citations, turn.claims = result.citations, result.claims
    shown = turn.grounded and turn.summary is None and bool(turn.evidence)
    turn.lead_with_evidence = shown and leads(result, bool(turn.evidence), settings, turn.spec)
    turn.evidence = turn.evidence[: settings.evidence_sentences]
