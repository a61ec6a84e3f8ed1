"""The store's bad luck (#21): a full disk cannot damage the index for good, and a Chroma
server that dies mid-ingest ends the run with a sentence.

Ingest refuses to begin a write without room; when Chroma's files are damaged anyway (a
write cut short by a full disk, or the cut-short vector index file the issue found),
``rag check`` says so in a sentence and ``rag check --repair`` rebuilds the index.
Everything runs for real: the ``rag`` commands as processes, Chroma on a small real file
system (a tmpfs, tests/support_disk.py) filled up by the test, ``chroma run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from support_disk import fill, small_disk
from support_store import ChromaServer

pytestmark = pytest.mark.integration  # `rag` and `chroma run` as processes, on a real small disk

ENTRIES = 240  # short log lines, one chunk each: a few seconds to embed
ROOMS = ("boiler", "library", "kitchen", "attic", "cellar", "garage", "studio", "porch")


def rag(*args: str, index: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "RAG_INDEX": str(index),
            "RAG_COLLECTION": "test",
            "RAG_CHUNK_TOKENS": "16",
            "RAG_CHUNK_OVERLAP": "0",
            **env,
        },
    )


def said(done: subprocess.CompletedProcess, *words: str) -> str:
    """The command's output, which must be sentences (no traceback) holding ``words``."""
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    assert all(w in out for w in words), out
    return out


def logs(folder: Path, files: int = 2, entries: int = ENTRIES) -> Path:
    """Log files of one-line entries (a chunk each, at RAG_CHUNK_TOKENS=16)."""
    folder.mkdir()
    per_file = entries // files
    for f in range(files):
        lines = [f"# Log {f}"]
        for n in range(f * per_file, (f + 1) * per_file):
            lines.append(f"Entry {n}: the valve in the {ROOMS[n % 8]} room {n * 7 % 997} held.")
        (folder / f"log{f}.md").write_text("\n\n".join(lines))
    return folder


def collection_saving_often(index: Path) -> None:
    """Chroma writes its vector index files every 1000 vectors by default; every 100 here,
    so that a small index has the files a large one has (made as rag would make it)."""
    client = chromadb.PersistentClient(
        path=str(index), settings=ChromaSettings(anonymized_telemetry=False)
    )
    client.create_collection(
        "test",
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "sync_threshold": 100, "batch_size": 100}},
        metadata={"embedding_model": "all-MiniLM-L6-v2"},
    )


def test_a_full_disk_is_refused_or_repaired_never_left_damaged(tmp_path):
    docs = logs(tmp_path / "docs")
    with small_disk(tmp_path / "disk") as disk:
        index = disk / "index"
        collection_saving_often(index)
        filler = fill(disk, leave_kb=1200)  # the index needs about 1.5 MB

        # The margin: nothing is written, so nothing can be damaged.
        refused = rag("ingest", str(docs), index=index)
        assert refused.returncode == 2
        said(refused, "RAG_MIN_FREE_MB", "nothing was written")
        # Without it, the disk fills up during the ingest: a sentence, no traceback.
        filled = rag("ingest", str(docs), index=index, RAG_MIN_FREE_MB="0")
        assert filled.returncode != 0
        said(filled, "rag check --repair")

        filler.unlink()  # space is freed
        room = {"RAG_MIN_FREE_MB": "1"}
        repaired = rag("check", "--repair", index=index, **room)
        assert repaired.returncode == 0, said(repaired)
        again = rag("ingest", str(docs), index=index, **room)
        assert again.returncode == 0, said(again)

        # The state the issue found: the vector index's metadata pickle of 0 bytes.
        [pickle] = index.glob("*/index_metadata.pickle")
        pickle.write_bytes(b"")
        listed = rag("sources", index=index)
        assert listed.returncode == 2
        said(listed, "damaged", "rag check --repair")
        checked = rag("check", index=index)
        assert checked.returncode == 1
        said(checked, "cut short", "rag check --repair")
        rebuilt = rag("check", "--repair", "--json", index=index, **room)
        assert rebuilt.returncode == 0, said(rebuilt)
        report = json.loads(rebuilt.stdout)
        assert report["consistent"] and report["rebuilt"] > 0
        assert report["chunks_in_chroma"] == report["chunks_in_word_index"] >= ENTRIES
        found = rag("query", "--json", "-k", "1", "Entry 123: the valve in the attic", index=index)
        assert json.loads(found.stdout)["hits"][0]["text"].startswith("Entry 123:"), found


def test_a_chroma_server_killed_during_ingest_ends_the_run_with_a_sentence(tmp_path):
    docs = logs(tmp_path / "docs", files=6, entries=6 * 300)  # a batch of chunks per file
    server = ChromaServer(tmp_path / "chroma")
    try:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "ingest", str(docs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "RAG_INDEX": str(tmp_path / "index"),
                "RAG_COLLECTION": "test",
                "RAG_CHROMA_URL": server.url,
                "RAG_CHUNK_TOKENS": "16",
                "RAG_CHUNK_OVERLAP": "0",
            },
        )
        client = chromadb.HttpClient(
            host="127.0.0.1", port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
        )
        deadline = time.monotonic() + 300
        while not _has_chunks(client) and ingest.poll() is None:  # the first batch written
            assert time.monotonic() < deadline, "the ingest wrote nothing in time"
            time.sleep(0.2)
        server.proc.kill()  # mid-run: more files wait to be written
        out, err = ingest.communicate(timeout=300)
    finally:
        server.stop()
    assert ingest.returncode == 2, out + err
    assert "Traceback" not in err
    assert "stopped answering" in err and "rag check --repair" in err, err


def _has_chunks(client) -> bool:
    try:
        return client.get_collection("test").count() > 0
    except Exception:  # not made yet
        return False
