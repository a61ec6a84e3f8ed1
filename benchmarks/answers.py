"""Answer quality, not only retrieval: are the answers right, checkable and finished?

    python -m benchmarks.answers [--llm SPEC ...] [--baseline] [--limit N] [--qa FILE]

Ingests the encyclopedia articles (benchmarks/encyclopedia), asks every question
of the QA set (benchmarks/qa/answers.jsonl, written the way people ask) at
temperature 0 and prints, per model and variant, side by side:

- answer accuracy: a gold answer is contained in the answer (case and thousands
  separators ignored);
- evidence accuracy: a gold answer is inside the top evidence sentence;
- shown: accuracy of what the reader is shown first (the evidence sentence when
  it leads, RAG_EVIDENCE_FIRST; else the answer), and led: how often it leads;
- caught: wrong answers marked contradicted, of all wrong ones; alarms: right
  answers marked contradicted, of all right ones;
- covered: share of the answer sentences that claim something which carry a
  citation (the model's or one attributed after generation) or a mark;
- looping: share of answers that repeat themselves (stopped by the guard, or,
  with the guard off, found by the same test afterwards);
- unsupported: share of answer sentences that no passage supports;
- median time to first token and tokens per second.

The models are the embedded one and every ``--llm`` (or ``RAG_LLM``) given.
``--baseline`` adds, for each model, the prompt and decoding of before #13 (no
evidence note, no repetition penalty, no loop guard), so the margin comes from
one run; ``--variant repetition_penalty=1.1`` adds other settings.

Three cheap calibrations that need no chat model:
``--evidence`` compares ways of picking the evidence sentence, ``--claims``
prints how well the grounding test separates true from false claims
(benchmarks/qa/claims.jsonl) at several thresholds, and ``--contradictions``
checks true, false and contradicting claims (benchmarks/qa/contradictions.jsonl,
over the encyclopedia and the sample documents) as answers are checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rag.answers import answering as chat
from rag.answers import checks, evidence, grounding, markdown, repetition
from rag.config import Settings
from rag.errors import ModelUnavailable
from rag.ingest.pipeline import Ingestor, discover
from rag.library import evaluation
from rag.library.search import open_library, search
from rag.models.routing import ModelPool

HERE = Path(__file__).resolve().parent
ARTICLES = HERE / "encyclopedia"
QA = HERE / "qa" / "answers.jsonl"
CLAIMS = HERE / "qa" / "claims.jsonl"
CONTRADICTIONS = HERE / "qa" / "contradictions.jsonl"
SAMPLE_DOCUMENTS = HERE.parent / "data"

# What "before #13" means: the prompt without the evidence note, no penalty sent,
# nothing stops a loop.
BASELINE = {"repetition_penalty": 1.0, "stop_loops": False, "evidence_in_prompt": False}


def normalise(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    return " ".join(text.split())


def contains(text: str, answers: list[str]) -> bool:
    plain = normalise(text)
    return any(normalise(a) in plain for a in answers)


def load(path: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


@dataclass
class Figures:
    label: str
    right: int = 0
    evidence_right: int = 0
    shown_right: int = 0  # what the reader sees first: the evidence when it leads
    led: int = 0  # answers led by the evidence
    looped: int = 0
    sentences: int = 0
    unsupported: int = 0
    covered: int = 0  # sentences cited or marked
    wrong_answers: int = 0
    caught: int = 0  # wrong answers marked contradicted
    right_answers: int = 0
    false_alarms: int = 0  # right answers marked contradicted
    first_token: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    asked: int = 0
    wrong: list[str] = field(default_factory=list)

    def row(self, width: int) -> str:
        n = max(self.asked, 1)
        ttft = statistics.median(self.first_token) if self.first_token else float("nan")
        rate = statistics.median(self.rates) if self.rates else float("nan")
        share = self.unsupported / self.sentences if self.sentences else 0.0
        covered = self.covered / self.sentences if self.sentences else 1.0
        return (
            f"{self.label:{width}} {self.right / n:7.3f} {self.evidence_right / n:8.3f} "
            f"{self.shown_right / n:6.3f} {self.led / n:5.2f} "
            f"{self.caught:3d}/{self.wrong_answers:<3d} "
            f"{self.false_alarms:3d}/{self.right_answers:<3d} "
            f"{covered:7.3f} {self.looped / n:7.3f} {share:11.3f} {ttft:8.2f}s {rate:8.1f}"
        )


def header(width: int) -> str:
    return (
        f"{'model / variant':{width}} {'answer':>7} {'evidence':>8} {'shown':>6} {'led':>5} "
        f"{'caught':>7} {'alarms':>7} {'covered':>7} {'looping':>7} "
        f"{'unsupported':>11} {'1st tok':>9} {'tok/s':>8}"
    )


def count_checks(figures: Figures, turn: chat.Turn, answers: list[str]) -> None:
    """What the reader is shown first, and how the checks did, for one answer."""
    right = contains(turn.text, answers)
    top = turn.evidence[markdown.leading_evidence(turn)] if turn.evidence else None
    shown = top.text if turn.lead_with_evidence and top is not None else turn.text
    figures.shown_right += contains(shown, answers)
    figures.led += turn.lead_with_evidence
    figures.wrong_answers += not right
    figures.right_answers += right
    figures.caught += not right and bool(turn.contradicted)
    figures.false_alarms += right and bool(turn.contradicted)
    marked = {u.start for u in turn.unsupported} | {c.start for c in turn.contradicted}
    cited = {c.start for c in turn.citations}
    figures.sentences += len(turn.claims)
    figures.covered += sum(1 for a, _ in turn.claims if a in marked or a in cited)


def loops(text: str) -> bool:
    guard = repetition.LoopGuard()
    return guard.feed(text + " ")


async def measure(label: str, questions: list[dict], library, settings: Settings) -> Figures:
    pool = ModelPool(settings)
    figures = Figures(label)
    for q in questions:
        turn = await chat.prepare(q["question"], library, settings)
        async for _ in chat.stream_answer(turn, pool, settings):
            pass
        figures.asked += 1
        if contains(turn.text, q["answers"]):
            figures.right += 1
        else:
            figures.wrong.append(f"{q['question']} -> {turn.text[:120]!r}")
        if turn.evidence and contains(turn.evidence[0].text, q["answers"]):
            figures.evidence_right += 1
        count_checks(figures, turn, q["answers"])
        figures.looped += turn.looped or loops(turn.text)
        figures.unsupported += len(turn.unsupported)
        if turn.stats.first_token_s is not None:
            figures.first_token.append(turn.stats.first_token_s)
        if turn.stats.tokens_per_s:
            figures.rates.append(turn.stats.tokens_per_s)
    return figures


def build_library(folder: Path):
    settings = Settings(index=folder / "index", collection="answers", temperature=0.0)
    library = open_library(settings)
    if library.store.count() == 0:
        Ingestor(library).run(discover([ARTICLES]), progress=False)
    return settings, library


async def answers(args, settings: Settings, library) -> None:
    questions = load(args.qa, args.limit)
    specs = list(
        dict.fromkeys(
            [
                "embedded",
                *(args.llm or []),
                *([os.environ["RAG_LLM"]] if os.environ.get("RAG_LLM") else []),
            ]
        )
    )
    print(
        f"{len(questions)} questions over {library.store.count()} chunks "
        f"of {len(list(ARTICLES.glob('*.md')))} articles, temperature 0\n"
    )
    per_model = [model_variants(spec, settings, args) for spec in specs]
    labels = [label for variants in per_model for label, _ in variants]
    width = max(map(len, ["model / variant", *labels]))
    print(header(width))
    for variants in per_model:
        for label, options in variants:
            try:
                figures = await measure(label, questions, library, options)
            except ModelUnavailable as exc:
                print(f"{label:{width}} not measured: {exc}")
                break
            print(figures.row(width), flush=True)
            if args.show_wrong:
                for line in figures.wrong:
                    print(f"    wrong: {line}")


def model_variants(spec: str, settings: Settings, args) -> list[tuple[str, Settings]]:
    """The model's settings as they are, then each variant asked for, labelled."""
    base = settings.with_overrides(llm=spec, llm_fallback=[], llm_routes={})
    variants = [(spec, base)]
    variants += [
        (f"{spec} {name}", options)
        for name, options in evaluation.variants(base, args.variant or []).items()
        if name != "default"
    ]
    if args.baseline:
        variants.append((f"{spec} baseline", base.with_overrides(**BASELINE)))
    return variants


def evidence_methods(args, library) -> None:
    """Evidence accuracy of the top sentence (and of the top two) by scoring method."""
    questions = load(args.qa, args.limit)
    methods = {
        "similarity only": (0.0, 0.0),
        "similarity + 0.5 overlap": (0.5, 0.0),
        "similarity + 0.25 overlap + 0.2 type": (0.25, 0.2),
        "similarity + 0.5 overlap + 0.1 type": (0.5, 0.1),
        "similarity + 0.5 overlap + 0.2 type (default)": (0.5, 0.2),
        "similarity + 0.5 overlap + 0.3 type": (0.5, 0.3),
        "similarity + 1.0 overlap + 0.2 type": (1.0, 0.2),
        "overlap only": None,
    }
    scored = {
        q["question"]: evidence.features(
            q["question"], search(library, q["question"], library.settings.top_k), library.embedder
        )
        for q in questions
    }
    print(f"evidence accuracy on {len(questions)} questions (gold answer in the sentence)")
    print(f"{'method':46} {'top 1':>6} {'top 2':>6}")
    for name, weights in methods.items():
        top1 = top2 = 0
        for q in questions:
            if weights is None:
                ranked = sorted(scored[q["question"]], key=lambda s: s.overlap, reverse=True)
                texts = [s.candidate.text for s in ranked]
            else:
                ranked_evidence = sorted(
                    (s.evidence(*weights) for s in scored[q["question"]]),
                    key=lambda e: e.score,
                    reverse=True,
                )
                texts = [e.text for e in ranked_evidence]
            top1 += bool(texts) and contains(texts[0], q["answers"])
            top2 += any(contains(t, q["answers"]) for t in texts[:2])
        n = len(questions)
        print(f"{name:46} {top1 / n:6.3f} {top2 / n:6.3f}", flush=True)


def claim_calibration(library) -> None:
    """How the grounding test separates true from false claims, per threshold."""
    rows = load(CLAIMS, None)
    scored = []
    for row in rows:
        hits = search(library, row["question"], library.settings.top_k)
        score = grounding.score_claim(row["claim"], hits, library.embedder)
        passages = "\n".join(h.chunk.text for h in hits)
        wrong_number = bool(grounding.numbers(row["claim"]) - grounding.numbers(passages))
        scored.append((score, wrong_number, row["supported"]))
    true = sum(1 for *_, ok in scored if ok)
    print(f"{len(rows)} claims: {true} supported by the passages, {len(rows) - true} not")
    print(f"{'threshold':>9} {'true kept':>10} {'false marked':>13}")
    for threshold in (0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2):
        kept = sum(1 for s, num, ok in scored if ok and s >= threshold and not num)
        marked = sum(1 for s, num, ok in scored if not ok and (s < threshold or num))
        print(f"{threshold:9.2f} {kept:5d}/{true:<4d} {marked:6d}/{len(rows) - true:<4d}")


def contradiction_calibration(
    settings: Settings, library, folder: Path, limit: int | None = None
) -> None:
    """Claims checked as answers are: true ones must pass, contradicting ones be caught."""
    sample = open_library(settings.with_overrides(index=folder / "sample", collection="sample"))
    if sample.store.count() == 0:
        Ingestor(sample).run(discover([SAMPLE_DOCUMENTS]), progress=False)
    libraries = {"encyclopedia": library, "data": sample}
    rows = load(CONTRADICTIONS, limit)
    counts: dict[str, list[int]] = {}
    for row in rows:
        lib = libraries[row["documents"]]
        hits = search(lib, row["question"], settings.top_k)
        found = evidence.best(row["question"], hits, lib.embedder, 2)
        result = checks.checked(
            row["claim"], row["question"], hits, found, lib.embedder, settings.unsupported_below
        )
        unsupported, wrong = result.unsupported, result.contradicted
        flagged = counts.setdefault(row["kind"], [0, 0])
        flagged[0] += 1
        flagged[1] += bool(wrong)
        marked = "contradicted" if wrong else ("unsupported" if unsupported else "passed")
        if (row["kind"] == "contradicting") != bool(wrong):
            says = f" (says {wrong[0].says!r})" if wrong else ""
            print(f"    {row['kind']} claim {marked}{says}: {row['claim']}")
    print(f"{len(rows)} claims over the sample documents and the encyclopedia")
    print(f"{'kind':14} {'claims':>6} {'contradicted':>12}")
    for kind in ("contradicting", "true", "false"):
        total, flagged_n = counts.get(kind, [0, 0])
        print(f"{kind:14} {total:6d} {flagged_n:12d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", action="append", help="also measure this model spec")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also measure each model with the decoding before #13",
    )
    parser.add_argument(
        "--variant",
        action="append",
        metavar="SETTING=VALUE[,...]",
        help="also measure with these settings, e.g. repetition_penalty=1.1",
    )
    parser.add_argument("--qa", type=Path, default=QA, help="JSON lines: question, answers")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument(
        "--evidence",
        action="store_true",
        help="compare evidence-sentence methods instead (no chat model)",
    )
    parser.add_argument(
        "--claims", action="store_true", help="calibrate the unsupported-sentence threshold instead"
    )
    parser.add_argument(
        "--contradictions",
        action="store_true",
        help="check the contradiction test on benchmarks/qa/contradictions.jsonl instead",
    )
    parser.add_argument("--show-wrong", action="store_true", help="list the wrong answers")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the index here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings, library = build_library(args.keep or Path(tmp))
        if args.evidence:
            evidence_methods(args, library)
        elif args.claims:
            claim_calibration(library)
        elif args.contradictions:
            contradiction_calibration(settings, library, args.keep or Path(tmp), args.limit)
        else:
            asyncio.run(answers(args, settings, library))


if __name__ == "__main__":
    main()
