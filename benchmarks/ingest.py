"""Ingest speed: the full pipeline against embedding its chunks alone, measured in one run.

    python -m benchmarks.ingest [--docs 300]

Prints the time to embed the corpus's chunks with the same model and batch
size, the full ingest time (read, chunk, embed, store) and their ratio, then
the time to re-ingest the unchanged corpus and its ratio to the first ingest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.corpus import write_corpus
from ingest.pipeline import Ingestor, discover
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbedder
from rag.retrieval import open_library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
    settings = Settings()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus", args.docs)
        embedder = SentenceTransformerEmbedder(settings.embedding_model, settings.embed_batch_size)
        embedder.embed(["warm up the model before timing anything"])
        library = open_library(settings.with_overrides(index=Path(tmp) / "index"), embedder)
        ingestor = Ingestor(library)
        target = discover([corpus])

        started = time.perf_counter()
        first = ingestor.run(target, progress=False)
        full_s = time.perf_counter() - started

        texts = [c.text for source in library.store.documents()
                 for c in library.store.document_chunks(source)]
        started = time.perf_counter()
        for i in range(0, len(texts), ingestor.batch_chunks):  # the pipeline's batches
            embedder.embed(texts[i : i + ingestor.batch_chunks])
        embed_s = time.perf_counter() - started

        started = time.perf_counter()
        again = ingestor.run(target, progress=False)
        reingest_s = time.perf_counter() - started

    assert first.chunks_written == len(texts) and again.chunks_written == 0
    print(f"corpus: {args.docs} documents, {len(texts)} chunks, model {embedder.name}, "
          f"batch {settings.embed_batch_size}")
    print(f"embed chunks alone:      {embed_s:8.2f} s")
    print(f"full ingest:             {full_s:8.2f} s   ratio to embedding alone: "
          f"{full_s / embed_s:.3f} (target <= 1.25)")
    print(f"re-ingest, unchanged:    {reingest_s:8.2f} s   ratio to first ingest:   "
          f"{reingest_s / full_s:.3f} (target <= 0.05)")


if __name__ == "__main__":
    main()
