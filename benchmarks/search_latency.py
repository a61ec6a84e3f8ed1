"""Retrieval latency on a large index: vector, BM25 and hybrid search, timed in one run.

    python -m benchmarks.search_latency [--chunks 20000] [--repeat 3] [--questions N]

Builds an index of ``--chunks`` chunks: the hand-written articles of
benchmarks/encyclopedia, really embedded, and filler chunks made of sentences
drawn from the Python documentation. The filler gets random unit vectors
instead of embeddings, to build the index in seconds rather than half an hour.
That is fair for timing: HNSW's cost depends on the number of vectors, their
dimension and the graph, not on what they mean, and random vectors, having no
clusters, are its harder case. Their text is real, so BM25 meets realistic
term statistics. Each question is embedded for real on every search, and the
times printed are the whole ``search`` call: embedding, both searches, fusion,
fetching the chunks and diversification.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import evalset
from rag.config import Settings
from rag.ingest.pipeline import Ingestor, discover
from rag.library import evaluation
from rag.library.chunks import Chunk
from rag.library.documents import Document
from rag.library.search import open_library, search

MODES = {"vector": "search_mode=vector", "lexical": "search_mode=lexical", "hybrid": ""}


def _sentences(folder: Path) -> list[str]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md")))
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if 20 < len(s) < 400]


def _filler(sentences: list[str], n: int, dim: int, seed: int = 5, start: int = 0):
    """``n`` filler chunks numbered from ``start``: a library grown in stretches
    (benchmarks/scale) gets new ids and whole documents of its own in each stretch."""
    rng = random.Random(seed + start)
    normal = np.random.default_rng(seed + start)
    prefix = f"s{start}-" if start else ""
    for j in range(n):
        if j % 10_000 == 0:  # a block at a time: a million vectors take 1.5 GB at once
            vectors = normal.standard_normal((min(10_000, n - j), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        text = ""
        while len(text) < 900:
            text += rng.choice(sentences) + " "
        source = f"/filler/{prefix}doc{j // 20:05}.md"
        yield (
            Chunk(id=f"filler-{start + j}", text=text.strip(), source=source, index=j % 20),
            vectors[j % 10_000],
        )


def write_filler(store, sentences: list[str], n: int, dim: int, start: int = 0) -> None:
    """``n`` filler chunks, stored as documents of 20 chunks each, 100 documents a call."""
    # A call's worth at a time: a million chunks held at once would not fit in memory.
    batch: dict[str, list] = {}
    filler = _filler(sentences, n, dim, start=start)
    for chunk, vector in itertools.chain(filler, [(None, None)]):
        if chunk is None or (chunk.source not in batch and len(batch) == 100):
            store.write_many(
                [
                    (
                        Document(source, "synthetic", len(pairs), False, time.time()),
                        [c for c, _ in pairs],
                        [v.tolist() for _, v in pairs],
                    )
                    for source, pairs in batch.items()
                ]
            )
            batch = {}
        if chunk is not None:
            batch.setdefault(chunk.source, []).append((chunk, vector))


def _timed(library, questions, settings, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        for q in questions:
            started = time.perf_counter()
            search(library, q.question, settings.top_k, settings)
            times.append((time.perf_counter() - started) * 1000)
    return times


def run(folder: Path, chunks: int, repeat: int, limit: int | None = None) -> None:
    evalset.write_technical_docs(folder / "technical", 1_500_000)
    settings = Settings(index=folder / "index", collection="latency")
    library = open_library(settings)
    Ingestor(library).run(discover([evalset.ARTICLES]), progress=False)
    dim = len(library.embedder.embed(["dimension"])[0])
    started = time.perf_counter()
    write_filler(
        library.store, _sentences(folder / "technical"), chunks - library.store.count(), dim
    )
    report = library.store.check()
    print(
        f"index: {report.chunks_in_chroma} chunks in Chroma, {report.chunks_in_word_index} in "
        f"the lexical index (filler written in {time.perf_counter() - started:.0f} s)"
    )

    questions = evaluation.load_questions(evalset.ARTICLE_QA)[:limit]
    library.embedder.embed(["warm up"])
    started = time.perf_counter()
    for q in questions:
        library.embedder.embed([q.question])
    embed_ms = (time.perf_counter() - started) * 1000 / len(questions)
    print(f"{len(questions)} questions x {repeat}; embedding one question alone: {embed_ms:.1f} ms")
    for name, spec in MODES.items():
        variant = evaluation.variants(settings, [spec] if spec else [])
        chosen = variant[spec] if spec else variant["default"]
        _timed(library, questions[:10], chosen, 1)  # warm caches
        times = sorted(_timed(library, questions, chosen, repeat))
        p95 = times[int(0.95 * (len(times) - 1))]
        print(
            f"{name:8s} median {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms"
            + ("   (target: median < 50 ms)" if name == "hybrid" else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the questions")
    parser.add_argument(
        "--questions", type=int, help="only the first N article questions (a quick smoke run)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.chunks, args.repeat, args.questions)


if __name__ == "__main__":
    main()
