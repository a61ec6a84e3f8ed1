"""The documents table: one row per document, the record of what the library holds.

A row says which version (content hash) of a file is complete in the chunk store,
how many chunks it has, whether it is private, and when it was ingested. Per-document
work (is this file unchanged? which chunks does it own? is it private?) reads this
table, never every chunk's metadata.

A row is *dirty* while a writer changes that document: the chunk store may then hold
chunks of other versions (a new one half written, an old one not yet deleted). A
writer that dies leaves the row dirty, and the next writer sweeps it (rag/library/store/).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.library.sqlite_writes import write_transaction

# Sweeping a dirty row another machine left is safe only once that writer is surely gone.
STALE_AFTER_S = 3600.0


@dataclass(frozen=True)
class Document:
    source: str  # absolute path of the file
    version: str  # content hash of the file and the options that shaped its chunks
    chunks: int
    private: bool = False
    ingested_at: float = 0.0


@dataclass(frozen=True)
class Unfinished:
    """A document a writer began to change: ``version`` is what is complete (None: nothing)."""

    source: str
    version: str | None
    writer: str  # "host:pid" of the writer
    since: float


def writer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_abandoned(row: Unfinished) -> bool:
    """Whether a dirty row's writer is gone, asked with the writer lock held: a writer on
    this machine whose process has ended, or any writer after ``STALE_AFTER_S``. (Not
    every local row: two index folders on one machine writing to one Chroma server hold
    two different file locks, and each would sweep the other's half-written version.)"""
    host, _, pid = row.writer.rpartition(":")
    local_and_dead = host == socket.gethostname() and not _alive(pid)
    return local_and_dead or time.time() - row.since > STALE_AFTER_S


def _alive(pid: str) -> bool:
    """Whether another process with this id runs here. This process's own dirty rows,
    seen with the lock held, are left by a write of its own that failed: abandoned."""
    try:
        number = int(pid)
    except ValueError:
        return False
    if number == os.getpid():
        return False
    try:
        os.kill(number, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another account
        return True
    return True


class Catalog(Protocol):
    """Where the documents table lives: SQLite beside an embedded index, Chroma on a server."""

    def documents(self) -> dict[str, Document]: ...
    def begin(self, sources: Sequence[str]) -> set[str]:
        """Mark ``sources`` dirty before their chunks change; returns those that had no row
        (the chunk store holds nothing of them: every write begins with a row)."""

    def commit(self, documents: Sequence[Document]) -> None:
        """Record complete versions (the rows stay dirty until ``finish``)."""

    def forget(self, sources: Sequence[str]) -> None:
        """No version of these is complete any more (the rows stay dirty)."""

    def finish(self, sources: Sequence[str]) -> None:
        """The chunk store holds exactly the recorded versions: clean, or drop forgotten rows."""

    def unfinished(self) -> list[Unfinished]: ...
    def generation(self) -> str:
        """Changes whenever the table does: readers compare it to know when to look again."""

    def close(self) -> None: ...


class SqliteCatalog:
    """The documents table in a SQLite file beside the embedded Chroma index."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, timeout=60, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS documents(
                source TEXT PRIMARY KEY, version TEXT, chunks INTEGER NOT NULL DEFAULT 0,
                private INTEGER NOT NULL DEFAULT 0, ingested_at REAL NOT NULL DEFAULT 0,
                dirty INTEGER NOT NULL DEFAULT 0, writer TEXT NOT NULL DEFAULT '',
                since REAL NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
            -- Every write looks for rows dead writers left: only those, not every row.
            CREATE INDEX IF NOT EXISTS documents_dirty ON documents(dirty) WHERE dirty=1;
            """
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with write_transaction(self._db, self._lock) as db:
            yield db
            db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (uuid.uuid4().hex,))

    def documents(self) -> dict[str, Document]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source, version, chunks, private, ingested_at FROM documents "
                "WHERE version IS NOT NULL"
            ).fetchall()
        return {s: Document(s, v, n, bool(p), t) for s, v, n, p, t in rows}

    def begin(self, sources: Sequence[str]) -> set[str]:
        new = set()
        with self._write() as db:
            for source in sources:
                if db.execute(
                    "INSERT OR IGNORE INTO documents(source) VALUES (?)", (source,)
                ).rowcount:
                    new.add(source)
                db.execute(
                    "UPDATE documents SET dirty=1, writer=?, since=? WHERE source=?",
                    (writer_name(), time.time(), source),
                )
        return new

    def commit(self, documents: Sequence[Document]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE documents SET version=?, chunks=?, private=?, ingested_at=? WHERE source=?",
                [(d.version, d.chunks, int(d.private), d.ingested_at, d.source) for d in documents],
            )

    def forget(self, sources: Sequence[str]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE documents SET version=NULL WHERE source=?", [(s,) for s in sources]
            )

    def finish(self, sources: Sequence[str]) -> None:
        with self._write() as db:
            rows = [(s,) for s in sources]
            db.executemany("DELETE FROM documents WHERE source=? AND version IS NULL", rows)
            db.executemany("UPDATE documents SET dirty=0 WHERE source=?", rows)

    def unfinished(self) -> list[Unfinished]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source, version, writer, since FROM documents WHERE dirty=1"
            ).fetchall()
        return [Unfinished(*row) for row in rows]

    def generation(self) -> str:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return row[0] if row else ""

    def close(self) -> None:
        with self._lock:
            self._db.close()


def catalog_path(index: Path, collection: str) -> Path:
    return index / f"{collection}.documents.sqlite3"
