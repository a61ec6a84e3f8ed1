"""The library under concurrent use: ingests, searches and listings in separate processes,
on the embedded index and on a shared Chroma server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servers import start_rag_server
from support_store import chroma_server  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.integration  # ingests, searches and servers in separate processes

# Searches in a loop until told to stop; every result must be a chunk that exists.
SEARCHER = """
import sys, time
from pathlib import Path
from rag.config import Settings
from rag.library.search import open_library, search

settings = Settings()
library = open_library(settings)
stop = Path(sys.argv[1])
n = 0
while not stop.exists():
    for q in ("warehouse crates", "orchard ledger", "equipment for project"):
        hits = search(library, q, 5)
        assert all(h.chunk.text for h in hits)
        n += 1
    library.store.documents()
print(n)
"""


def _env(index: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAG_INDEX": str(index), "RAG_COLLECTION": "test", **extra}


def _corpus(folder: Path, prefix: str, files: int, paragraphs: int) -> dict[str, str]:
    """Files each holding a word found nowhere else; returns word -> path."""
    folder.mkdir(parents=True)
    unique = {}
    for i in range(files):
        word = f"{prefix}{i:03d}zq"
        lines = [
            f"Paragraph {p} of {prefix} file {i}: the warehouse stores {p + 3} crates of "
            f"equipment for project {i % 7}, and the orchard ledger lists them."
            for p in range(paragraphs)
        ]
        lines.insert(paragraphs // 2, f"Only this file mentions {word}.")
        path = folder / f"{prefix}{i:03d}.txt"
        path.write_text("\n\n".join(lines))
        unique[word] = str(path)
    return unique


def _rag(env, *args, timeout=600, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *map(str, args)],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_ingest_beside_searches_listings_and_another_ingest_stays_consistent(tmp_path):
    index = tmp_path / "index"
    env = _env(index)
    big = _corpus(tmp_path / "big", "alpha", files=60, paragraphs=30)
    small = _corpus(tmp_path / "small", "beta", files=10, paragraphs=4)
    stop = tmp_path / "stop"

    first = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "ingest", tmp_path / "big"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait(
        lambda: (index / "test.documents.sqlite3").exists() or first.poll() is not None,
        "the first ingest to begin writing",
    )
    searcher = subprocess.Popen(
        [sys.executable, "-c", SEARCHER, stop],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "ingest", tmp_path / "small"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    listings = 0
    while first.poll() is None or second.poll() is None:
        listed = _rag(env, "sources", "--json", timeout=120)
        assert listed.returncode == 0, listed.stderr
        json.loads(listed.stdout)
        listings += 1
    for proc in (first, second):
        _, err = proc.communicate()
        assert proc.returncode == 0, err
    stop.touch()
    out, err = searcher.communicate(timeout=300)
    assert searcher.returncode == 0, err
    assert int(out) > 0 and listings > 0  # both really ran beside the ingests

    checked = _rag(env, "check", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["consistent"] and report["documents"] == 70

    words = {**big, **small}
    found = _rag(
        {**env, "RAG_SEARCH_MODE": "lexical"}, "query", "--json", "-k", "1", stdin="\n".join(words)
    )
    assert found.returncode == 0, found.stderr
    answers = [json.loads(line) for line in found.stdout.splitlines()]
    assert {a["question"]: [h["source"] for h in a["hits"]] for a in answers} == {
        w: [p] for w, p in words.items()
    }


def test_two_rag_serve_processes_on_one_server_answer_from_a_third_process_ingest(
    tmp_path,
    chroma_server,  # noqa: F811 - the fixture imported above
):
    # Two machines in effect: each `rag serve` has its own local folder (word-index cache).
    servers = []
    try:
        for name in ("one", "two"):
            env = _env(tmp_path / name, RAG_CHROMA_URL=chroma_server.url, RAG_COLLECTION="served")
            servers.append(start_rag_server(env))
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "quokka-census.md").write_text(
            "# Quokka census\n\nThe 2031 quokka census on Rottnest Island counted 11,482 "
            "quokkas, most of them near the salt lakes.\n"
        )
        ingested = _rag(
            _env(tmp_path / "three", RAG_CHROMA_URL=chroma_server.url, RAG_COLLECTION="served"),
            "ingest",
            docs,
        )
        assert ingested.returncode == 0, ingested.stderr
        for _, base in servers:
            reply = httpx.post(
                f"{base}/chat/completions",
                timeout=300,
                json={
                    "model": "local-rag-chat",
                    "max_tokens": 8,
                    "temperature": 0,
                    "messages": [
                        {"role": "user", "content": "How many quokkas did the quokka census count?"}
                    ],
                },
            )
            assert reply.status_code == 200, reply.text
            sources = [s["title"] for s in reply.json()["rag"]["sources"]]
            assert "quokka-census.md" in sources, reply.text
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)
