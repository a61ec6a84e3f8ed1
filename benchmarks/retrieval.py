"""Retrieval quality: vector, BM25 and hybrid search measured side by side in one run.

    python -m benchmarks.retrieval [--tech-kb 900] [--towns 120] [--keep DIR]

Builds the evaluation set of benchmarks/evalset.py (hand-written articles and
a generated gazetteer among Python documentation, ~2,000 chunks), ingests it
with the default settings and prints hit@1/3/5/10, MRR@10 and neighbours@5 (the
share of top-5 slots taken by a chunk next to a better-ranked one of the same
document) for each variant, per question set and over all questions.
``--keep DIR`` keeps the corpus and index there and reuses them next time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks import evalset
from rag.config import Settings
from rag.ingest.pipeline import Ingestor, discover
from rag.library import evaluation
from rag.library.search import open_library

VARIANTS = [
    "search_mode=vector",
    "search_mode=lexical",
    "fusion=rrf,lexical_weight=0.5,mmr_lambda=1",  # unweighted RRF, as in the issue
    "mmr_lambda=1",  # the default fusion without diversification
]


def run(folder: Path, tech_kb: int, towns: int, variants: list[str]) -> None:
    started = time.perf_counter()
    sets = evalset.build(folder / "corpus", tech_kb * 1000, towns)
    settings = Settings(index=folder / "index", collection="eval")
    library = open_library(settings)
    summary = Ingestor(library).run(discover([folder / "corpus"]), progress=False)
    chunks = library.store.count()
    print(
        f"corpus: {chunks} chunks from {len(summary.added) + len(summary.unchanged)} files, "
        f"{sum(len(q) for q in sets.values())} questions ({time.perf_counter() - started:.0f} s "
        "to build and ingest)"
    )
    sets["all"] = [q for qs in list(sets.values()) for q in qs]
    configs = evaluation.variants(settings, variants)
    for name, questions in sets.items():
        reports = evaluation.evaluate(library, questions, configs)
        print(f"\n== {name} ==")
        print(evaluation.render(reports, fail_at=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tech-kb", type=int, default=900, help="technical documentation, kB")
    parser.add_argument("--towns", type=int, default=120, help="gazetteer articles")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the corpus and index here")
    parser.add_argument("--variant", action="append", help="replace the default variants")
    args = parser.parse_args()
    variants = args.variant or VARIANTS
    if args.keep:
        run(args.keep, args.tech_kb, args.towns, variants)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.tech_kb, args.towns, variants)


if __name__ == "__main__":
    main()
