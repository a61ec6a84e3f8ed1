"""Writers on several machines sharing one Chroma server, serialised by PostgreSQL.

Each "machine" is an index folder of its own (its word-index cache and its file lock),
as on two hosts; the writer lock they share is PostgreSQL's advisory lock
(RAG_DATABASE_URL), which rag/library/shared_lock.py takes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from rag.config import Settings
from rag.errors import RagError
from rag.library.chunks import Chunk
from rag.library.documents import Document
from rag.library.shared_lock import SharedWriterLock
from rag.library.store import open_store

from support_db import missing, postgres_cluster
from support_store import chroma_server  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.integration  # PostgreSQL, a Chroma server, ingests in processes


@pytest.fixture(scope="module")
def postgres(processes):
    reason = missing()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with postgres_cluster() as url:
        yield url


def _end_lock_holders(url: str) -> None:
    """What a crashed machine does to its connections: they end."""

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            )
        finally:
            await conn.close()

    asyncio.run(run())


def test_the_shared_writer_lock_excludes_other_machines_and_dies_with_its_holder(postgres):
    one = SharedWriterLock(postgres, "http://chroma.example:8000/library")
    two = SharedWriterLock(postgres, "http://chroma.example:8000/library")
    other = SharedWriterLock(postgres, "http://chroma.example:8000/another")
    assert one.try_hold()
    with one.hold():  # re-entrant for its holder
        assert one.depth == 2
    assert not two.try_hold()
    with pytest.raises(RagError, match="writing to this library"), two.hold(timeout=0.5):
        pass
    assert other.try_hold()  # another library's lock is another lock
    other.release()
    one.release()
    assert two.try_hold()
    _end_lock_holders(postgres)  # the holder's machine is gone: no lock is left behind
    with one.hold(timeout=30):
        assert one.depth == 1


def test_an_unreachable_database_says_what_to_start():
    lock = SharedWriterLock("postgresql://nobody@127.0.0.1:9/none", "http://x:1/library")
    with pytest.raises(RagError, match="RAG_DATABASE_URL"):
        lock.try_hold()


def _corpus(folder: Path, prefix: str, files: int) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        paragraphs = [
            f"Paragraph {p} of the {prefix} ledger {i}: the depot keeps {p + i} crates of "
            f"rivets for the {prefix} line, and the {prefix}{i:03d}zq tag marks them."
            for p in range(12)
        ]
        (folder / f"{prefix}{i:03d}.txt").write_text("\n\n".join(paragraphs))


def _rag(env: dict, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_two_machines_ingesting_into_one_server_at_once_leave_both_consistent(
    tmp_path,
    postgres,
    chroma_server,  # noqa: F811 - the fixture imported above
):
    _corpus(tmp_path / "north", "north", 12)
    _corpus(tmp_path / "south", "south", 12)
    _corpus(tmp_path / "both", "both", 6)  # ingested by both machines at once
    machines = {
        name: {
            **os.environ,
            "RAG_INDEX": str(tmp_path / f"machine-{name}"),
            "RAG_COLLECTION": "shared-writers",
            "RAG_CHROMA_URL": chroma_server.url,
            "RAG_DATABASE_URL": postgres,
        }
        for name in ("north", "south")
    }
    ingests = [
        subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "ingest", tmp_path / name, tmp_path / "both"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in machines.items()
    ]
    for proc in ingests:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
    for env in machines.values():
        checked = _rag(env, "check", "--json")
        report = json.loads(checked.stdout)
        assert checked.returncode == 0 and report["consistent"], checked.stdout + checked.stderr
        assert report["documents"] == 30 and report["chunks_in_word_index"] > 0
    # Each machine finds the other's documents by a word only they hold.
    for name, env in machines.items():
        word = "south003zq" if name == "north" else "north003zq"
        found = _rag({**env, "RAG_SEARCH_MODE": "lexical"}, "query", "--json", "-k", "1", word)
        hits = json.loads(found.stdout.splitlines()[-1])["hits"]
        assert Path(hits[0]["source"]).name == f"{word[:-2]}.txt", found.stdout


def test_under_the_shared_lock_a_writer_in_step_compares_no_whole_table_per_write(
    tmp_path,
    postgres,
    chroma_server,  # noqa: F811 - the fixture imported above
    monkeypatch,
):
    """Every writer takes PostgreSQL's lock, so a writer's own writes keep its word index
    in step: it no longer reads every document's row over HTTP per write (#25), and
    another machine's write is still caught at the next one."""

    def store(machine: str):
        settings = Settings(
            index=tmp_path / machine,
            collection="in-step",
            chroma_url=chroma_server.url,
            database_url=postgres,
        )
        return open_store(settings, "contract-model")

    def put(into, source: str, text: str) -> None:
        chunk = Chunk(id=f"{source}#0", text=text, source=source, index=0)
        into.write(Document(source, "v1", 1, False, 1000.0), [chunk], [[1.0, 0.0]])

    mine, theirs = store("a"), store("b")
    put(mine, "/d/first.md", "The first page.")
    reads: list[int] = []
    documents = mine._catalog.documents
    monkeypatch.setattr(mine._catalog, "documents", lambda: [reads.append(1), documents()][1])
    for i in range(4):
        put(mine, f"/d/page{i}.md", f"Page number {i}.")
    assert reads == []
    put(theirs, "/d/theirs.md", "A tapestry from elsewhere.")
    put(mine, "/d/mine.md", "My own page.")
    assert reads and [i for i, _ in mine.keyword("tapestry", 5)] == ["/d/theirs.md#0"]
    mine.close()
    theirs.close()
