"""Measuring retrieval against questions whose answers are known: ``rag eval QA.jsonl``.

A QA file has one JSON object per line: ``{"question": ..., "answers": [...],
"evidence": "..."}`` (evidence optional). A retrieved chunk is a hit when it
holds one of the answers and, when given, the whole evidence sentence, compared
without regard to case, accents or spacing. Several settings (variants) are
measured in one run over the same index, with each question embedded once.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from rag.config import Settings
from rag.errors import RagError
from rag.library.chunks import Hit
from rag.library.live import Library
from rag.library.search import search_by_vector

DEPTHS = (1, 3, 5, 10)


@dataclass(frozen=True)
class Question:
    question: str
    answers: tuple[str, ...]
    evidence: str | None = None


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.split())


def load_questions(path: Path) -> list[Question]:
    questions = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RagError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            answers = row["answers"]
            assert isinstance(row["question"], str) and row["question"].strip()
            assert (
                isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)
            )
            assert isinstance(row.get("evidence") or "", str)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise RagError(
                f'{path}:{number}: expected {{"question": str, "answers": [str, ...], '
                f'"evidence": str (optional)}} ({type(exc).__name__})'
            ) from exc
        questions.append(Question(row["question"], tuple(answers), row.get("evidence") or None))
    if not questions:
        raise RagError(f"{path} holds no questions.")
    return questions


def holds(text: str, question: Question) -> bool:
    text = _normal(text)
    if question.evidence and _normal(question.evidence) not in text:
        return False
    return any(_normal(a) in text for a in question.answers)


@dataclass(frozen=True)
class Outcome:
    question: Question
    hits: list[Hit]

    @property
    def rank(self) -> int | None:
        """Rank of the first hit that holds the answer, if any was retrieved."""
        return next((h.rank for h in self.hits if holds(h.chunk.text, self.question)), None)

    def neighbours(self, k: int) -> int:
        """Top-k slots taken by a chunk next to (or the same as) a better one of its document."""
        seen: set[tuple[str, int]] = set()
        count = 0
        for hit in self.hits[:k]:
            c = hit.chunk
            count += any((c.source, c.index + d) in seen for d in (-1, 0, 1))
            seen.add((c.source, c.index))
        return count


@dataclass
class Report:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        ranks = [o.rank for o in self.outcomes]
        n = max(len(ranks), 1)
        out = {f"hit@{k}": sum(r is not None and r <= k for r in ranks) / n for k in DEPTHS}
        out["mrr@10"] = sum(1 / r for r in ranks if r is not None and r <= 10) / n
        out["neighbours@5"] = sum(o.neighbours(5) for o in self.outcomes) / (5 * n)
        return out

    def failures(self, k: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.rank is None or o.rank > k]


def parse_variant(text: str) -> dict[str, str]:
    """``search_mode=vector,lexical_weight=0.3`` as a dict, every name a real setting."""
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in Settings.model_fields:
            raise RagError(
                f"--variant {text!r}: expected SETTING=VALUE[,...] with a setting "
                "name such as search_mode, lexical_weight or mmr_lambda."
            )
        values[name] = value.strip()
    return values


def variants(settings: Settings, specs: Sequence[str]) -> dict[str, Settings]:
    """The settings as given ("default"), then one variant per spec."""
    out = {"default": settings}
    for spec in specs:
        try:
            out[spec] = settings.with_overrides(**parse_variant(spec))
        except ValidationError as exc:
            raise RagError(f"--variant {spec!r}: {exc.errors()[0]['msg']}") from exc
    return out


def evaluate(
    library: Library, questions: Sequence[Question], settings: dict[str, Settings]
) -> list[Report]:
    vectors = library.embedder.embed([q.question for q in questions])
    depth = max(DEPTHS)
    reports = []
    for name, variant in settings.items():
        report = Report(name)
        for q, vector in zip(questions, vectors):
            hits = search_by_vector(library, q.question, vector, depth, variant)
            report.outcomes.append(Outcome(q, hits))
        reports.append(report)
    return reports


def as_dict(reports: Sequence[Report], fail_at: int) -> dict:
    return {
        "questions": len(reports[0].outcomes) if reports else 0,
        "variants": [
            {
                "name": r.name,
                "metrics": {k: round(v, 4) for k, v in r.metrics().items()},
                "failures": [
                    {
                        "question": o.question.question,
                        "answers": list(o.question.answers),
                        "rank": o.rank,
                        "retrieved": [h.chunk.label() for h in o.hits[:3]],
                    }
                    for o in r.failures(fail_at)
                ],
            }
            for r in reports
        ],
    }


def render(reports: Sequence[Report], fail_at: int) -> str:
    names = ["hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "neighbours@5"]
    width = max([len(r.name) for r in reports] + [7])
    lines = [
        f"{len(reports[0].outcomes)} questions",
        f"{'variant':<{width}}  " + "  ".join(f"{n:>12}" for n in names),
    ]
    for r in reports:
        m = r.metrics()
        lines.append(f"{r.name:<{width}}  " + "  ".join(f"{m[n]:>12.3f}" for n in names))
    if fail_at:
        failed = reports[0].failures(fail_at)
        lines.append(
            f"\n{len(failed)} question(s) without a hit in the top {fail_at} ({reports[0].name}):"
        )
        for o in failed:
            where = f"rank {o.rank}" if o.rank else "not in the top 10"
            top = "; ".join(h.chunk.label() for h in o.hits[:3]) or "nothing retrieved"
            lines.append(
                f"- {o.question.question}  [{where}; answer {o.question.answers[0]!r}]"
                f"\n    retrieved: {top}"
            )
    return "\n".join(lines)
