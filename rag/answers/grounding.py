"""Answer sentences that no retrieved passage supports.

A cheap test that needs no extra model: a sentence of the answer is supported
when it is close in meaning to some sentence of the passages (cosine similarity
of their embeddings, the library's own embedder) and its content words are found
in the passages. Its support score is

    max similarity to a passage sentence + 0.5 * share of its content words in the passages

and it is marked unsupported below ``Settings.unsupported_below`` (calibrated on
benchmarks/qa/claims.jsonl, true and false claims about the encyclopedia
articles: ``python -m benchmarks.answers --claims``). A number the passages do not
hold (a wrong year, a wrong count) marks the sentence whatever its score: that is
the contradiction small models make most, and similarity hardly sees it.
Sentences with fewer than three content words and no number ("The answer is:")
claim nothing and are not judged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.answers import evidence
from rag.embeddings.embedder import Embedder
from rag.library.chunks import Hit

OVERLAP_WEIGHT = 0.5
MIN_CONTENT_WORDS = 3

_CITATION = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
_NUMBER = re.compile(r"\d[\d,.]*\d|\d")


@dataclass(frozen=True)
class Unsupported:
    """A sentence of the answer, by its offsets in the answer's text."""

    text: str
    start: int
    end: int
    score: float
    reason: str  # "number" (a number the passages do not hold) or "similarity"

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 3),
            "reason": self.reason,
        }


def numbers(text: str) -> set[str]:
    """Numbers as written, without thousands separators or a final full stop."""
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def claims(answer: str) -> list[tuple[int, int]]:
    """Spans of the answer's sentences."""
    return evidence.sentence_spans(answer)


def support(
    sentence: str,
    vector: Sequence[float],
    passage_vectors: Sequence[Sequence[float]],
    passage_words: set[str],
) -> float:
    similarity = max((sum(x * y for x, y in zip(vector, p)) for p in passage_vectors), default=0.0)
    words = evidence.content_words(sentence)
    covered = len(words & passage_words) / len(words) if words else 1.0
    return float(similarity) + OVERLAP_WEIGHT * covered


@dataclass(frozen=True)
class Judged:
    """One sentence of the answer with its support by the passages: the best score
    over all passages (``score``), the best per passage (``by_chunk``: the same score
    against that passage's sentences only) and the passage sentence closest to it."""

    start: int
    end: int
    plain: str  # the sentence without citation markers
    reason: str  # "number", "similarity", or "" for a sentence too short to judge
    score: float = 0.0
    by_chunk: dict[str, float] = field(default_factory=dict)
    closest: evidence.Candidate | None = None


def judge(answer: str, hits: Sequence[Hit], embedder: Embedder) -> list[Judged]:
    """Every sentence of ``answer`` with its support (blocking: embeds once)."""
    if not hits or not answer.strip():
        return []
    passage_text = "\n".join(h.chunk.text for h in hits)
    passage_words = evidence.content_words(passage_text)
    passage_numbers = numbers(passage_text)
    found = evidence.candidates(hits)
    spans = []
    for a, b in claims(answer):
        plain = _CITATION.sub("", answer[a:b]).strip()
        if numbers(plain) - passage_numbers:
            spans.append((a, b, plain, "number"))
        elif len(evidence.content_words(plain)) >= MIN_CONTENT_WORDS:
            spans.append((a, b, plain, "similarity"))
        else:
            spans.append((a, b, plain, ""))
    to_embed = [plain for _, _, plain, reason in spans if reason]
    if not to_embed or not found:
        return [Judged(a, b, plain, reason) for a, b, plain, reason in spans]
    vectors = embedder.embed(to_embed + [c.text for c in found])
    own_words = {h.chunk.id: evidence.content_words(h.chunk.text) for h in hits}
    claim_vectors = iter(vectors[: len(to_embed)])
    passage_vectors = vectors[len(to_embed) :]
    judged = []
    for a, b, plain, reason in spans:
        if not reason:
            judged.append(Judged(a, b, plain, reason))
            continue
        vector = next(claim_vectors)
        words = evidence.content_words(plain)
        covered = len(words & passage_words) / len(words) if words else 1.0
        by_chunk: dict[str, float] = {}
        closest, best = None, -1.0
        for candidate, p in zip(found, passage_vectors):
            similarity = float(sum(x * y for x, y in zip(vector, p)))
            key = candidate.chunk.id
            here = len(words & own_words[key]) / len(words) if words else 1.0
            by_chunk[key] = max(by_chunk.get(key, -1.0), similarity + OVERLAP_WEIGHT * here)
            if similarity > best:
                closest, best = candidate, similarity
        score = best + OVERLAP_WEIGHT * covered
        judged.append(Judged(a, b, plain, reason, score, by_chunk, closest))
    return judged


def unsupported(
    answer: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    threshold: float,
    judged: Sequence[Judged] | None = None,
) -> list[Unsupported]:
    """The sentences of ``answer`` that the passages do not support (blocking: embeds,
    unless the sentences were ``judged`` already)."""
    if judged is None:
        judged = judge(answer, hits, embedder)
    found = []
    for j in judged:
        if j.reason == "number":
            found.append(Unsupported(answer[j.start : j.end], j.start, j.end, 0.0, j.reason))
        elif j.reason and j.score < threshold:
            found.append(Unsupported(answer[j.start : j.end], j.start, j.end, j.score, j.reason))
    return found


def score_claim(claim: str, hits: Sequence[Hit], embedder: Embedder) -> float:
    """The support score of one claim, for calibration (numbers are not looked at)."""
    passage_sentences = [c.text for c in evidence.candidates(hits)]
    vector, *passage_vectors = embedder.embed([claim, *passage_sentences])
    words = evidence.content_words("\n".join(h.chunk.text for h in hits))
    return support(claim, vector, passage_vectors, words)
