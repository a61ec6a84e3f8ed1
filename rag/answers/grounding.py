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
from dataclasses import dataclass

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


def unsupported(
    answer: str, hits: Sequence[Hit], embedder: Embedder, threshold: float
) -> list[Unsupported]:
    """The sentences of ``answer`` that the passages do not support (blocking: embeds)."""
    if not hits or not answer.strip():
        return []
    passages = [h.chunk.text for h in hits]
    passage_text = "\n".join(passages)
    passage_words = evidence.content_words(passage_text)
    passage_numbers = numbers(passage_text)
    passage_sentences = [c.text for c in evidence.candidates(hits)]
    judged = []
    for a, b in claims(answer):
        text = answer[a:b]
        plain = _CITATION.sub("", text).strip()
        missing = numbers(plain) - passage_numbers
        if missing:
            judged.append((a, b, plain, "number"))
        elif len(evidence.content_words(plain)) >= MIN_CONTENT_WORDS:
            judged.append((a, b, plain, "similarity"))
    if not judged:
        return []
    to_embed = [plain for *_, plain, reason in judged if reason == "similarity"]
    vectors = embedder.embed(to_embed + passage_sentences) if to_embed else []
    claim_vectors = iter(vectors[: len(to_embed)])
    passage_vectors = vectors[len(to_embed) :]
    found = []
    for a, b, plain, reason in judged:
        if reason == "number":
            found.append(Unsupported(answer[a:b], a, b, 0.0, reason))
            continue
        score = support(plain, next(claim_vectors), passage_vectors, passage_words)
        if score < threshold:
            found.append(Unsupported(answer[a:b], a, b, score, reason))
    return found


def score_claim(claim: str, hits: Sequence[Hit], embedder: Embedder) -> float:
    """The support score of one claim, for calibration (numbers are not looked at)."""
    passage_sentences = [c.text for c in evidence.candidates(hits)]
    vector, *passage_vectors = embedder.embed([claim, *passage_sentences])
    words = evidence.content_words("\n".join(h.chunk.text for h in hits))
    return support(claim, vector, passage_vectors, words)
