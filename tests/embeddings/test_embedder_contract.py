"""One contract for the Embedder role, run by every implementation in the registry.

sentence-transformers is the reference: the ONNX embedders must give its vectors
(fp32 to 1e-4; int8 close enough to rank alike) and exactly its token counts, so
indexes built by either stay valid and chunk ids never change.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest

from rag.config import Settings
from rag.embeddings.embedder import (
    EMBEDDERS,
    SHIPPED_MODEL,
    Embedder,
    SentenceTransformerEmbedder,
    create_embedder,
)

from servers import ROOT

# Real text: the sample documents cut into passages, plus the awkward cases.
_PASSAGES = [
    text[i : i + 800]
    for path in sorted((ROOT / "data").glob("*.md"))
    for text in [path.read_text(encoding="utf-8")]
    for i in range(0, len(text), 600)
]
TEXTS = [
    *_PASSAGES,
    "How do I reset the router?",
    "x",
    "",
    "Ünïcödé çafé, naïve résumé; 日本語のテキストと中文文本。",
    "word " * 600,  # far past 256 tokens: both must cut it at the same place
]
# Worst per-vector cosine against the reference each variant must keep.
MIN_COSINE = {"sentence-transformers": 0.9999, "onnx": 0.9999, "onnx-int8": 0.95}


@pytest.fixture(scope="module")
def reference(models) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def reference_vectors(reference) -> np.ndarray:
    return np.asarray(reference.embed(TEXTS))


@pytest.fixture(scope="module", params=sorted(EMBEDDERS))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def embedder(kind, models) -> Embedder:
    made = create_embedder(Settings(embedder=kind))
    made.prepare()
    return made


def test_registry_matches_the_setting():
    allowed = typing.get_args(Settings.model_fields["embedder"].annotation)
    assert set(allowed) == set(EMBEDDERS)
    assert Settings().embedder == "onnx"


def test_name_is_the_model_so_existing_indexes_stay_valid(embedder):
    assert embedder.name == SHIPPED_MODEL


def test_reads_as_many_tokens_as_sentence_transformers(embedder, reference):
    assert embedder.max_tokens == reference.max_tokens == 256


def test_vectors_are_unit_length_and_one_per_text(embedder):
    vectors = np.asarray(embedder.embed(TEXTS))
    assert vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]) == []


def test_vectors_match_the_reference(kind, embedder, reference_vectors):
    vectors = np.asarray(embedder.embed(TEXTS))
    cosines = (vectors * reference_vectors).sum(axis=1)
    assert cosines.min() >= MIN_COSINE[kind], cosines.min()
    if kind != "onnx-int8":  # quantized weights are close, not equal
        assert np.abs(vectors - reference_vectors).max() <= 1e-4


def test_a_text_gets_the_same_vector_alone_or_in_a_batch(kind, embedder):
    # Padding to a batch's longest text must not leak into the mean.
    batch = np.asarray(embedder.embed(TEXTS[:8]))
    alone = np.asarray([embedder.embed([text])[0] for text in TEXTS[:8]])
    assert (batch * alone).sum(axis=1).min() >= MIN_COSINE[kind]
    if kind != "onnx-int8":  # dynamic int8 scales activations per batch: close, not equal
        assert np.abs(batch - alone).max() <= 1e-4


def test_token_counts_match_the_reference_exactly(embedder, reference):
    # Chunk boundaries, and so chunk ids, come from these counts.
    assert embedder.count_tokens(TEXTS) == reference.count_tokens(TEXTS)
    assert embedder.count_tokens(["word " * 600])[0] == 600  # counting is never cut off


def test_usable_from_two_threads_at_once(embedder):
    # Ingest counts tokens in a reader thread while another embeds.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        counts = [pool.submit(embedder.count_tokens, TEXTS) for _ in range(4)]
        vectors = [pool.submit(embedder.embed, TEXTS[:4]) for _ in range(4)]
        assert len({tuple(f.result(timeout=120)) for f in counts}) == 1
        assert all(len(f.result(timeout=120)) == 4 for f in vectors)


def test_an_index_built_by_the_reference_is_the_one_onnx_builds(reference, sample_docs, tmp_path):
    # Same chunks (same token counts), same ids, same vectors: an existing index is
    # searched as it is, and re-ingesting with the new default rewrites nothing.
    from rag.ingest.pipeline import Ingestor, discover
    from rag.library.live import open_library

    onnx = create_embedder(Settings(embedder="onnx"))
    old = open_library(Settings(index=tmp_path / "old", collection="test"), reference)
    Ingestor(old).run(discover([sample_docs]), progress=False)
    new = open_library(Settings(index=tmp_path / "new", collection="test"), onnx)
    Ingestor(new).run(discover([sample_docs]), progress=False)

    ids = [c.id for source in old.store.documents() for c in old.store.document_chunks(source)]
    before, after = old.store.fetch(ids), new.store.fetch(ids)
    assert sorted(after) == sorted(before) and before
    vectors = np.asarray([after[i][1] for i in ids])
    assert np.abs(vectors - np.asarray([before[i][1] for i in ids])).max() <= 1e-4

    again = Ingestor(open_library(old.settings, onnx)).run(discover([sample_docs]), progress=False)
    assert again.chunks_written == 0 and len(again.unchanged) == 4


def test_two_processes_build_the_export_once(tmp_path, processes):
    # A leftover of an interrupted build must be cleaned, not taken as finished.
    import os
    import subprocess
    import sys

    from rag.embeddings.onnx_export import READY_FILE, export_dir

    target = export_dir(tmp_path, SHIPPED_MODEL, "fp32")
    stale = target.parent / f".build-{target.name}-stale"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_text("half")
    script = (
        "import sys; from pathlib import Path; from rag.embeddings.embedder import OnnxEmbedder;"
        "e = OnnxEmbedder(cache_dir=Path(sys.argv[1])); e.prepare(); print('READY', e.max_tokens)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert all("READY 256" in out for out in outputs), outputs
    assert sum("Exporting the embedding model" in out for out in outputs) == 1, outputs
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, f"{target.name}.lock"]
    assert (target / READY_FILE).is_file()
