"""Where the private records live: the users, their keys and who reads what.

One small interface (``PrivateTables``) with two kinds behind it, chosen by the scheme of
``RAG_DATABASE_URL`` (the ``KINDS`` registry):

- no URL (or a SQLite one): a SQLite file per record in the index folder, made with
  mode 600, never created by a read; each machine has its own.
- PostgreSQL: the tables of every record in the schema ``rag_private`` of that database,
  so every replica and every ``rag`` command on any machine sees the same users, keys
  and rights, and a revoke holds on every replica at its next request.

The modules that own the records (rag/web/users.py, rag/web/keys.py,
rag/library/access.py) write their queries once, in SQLAlchemy Core, for both kinds.
PostgreSQL is reached through psycopg, a synchronous driver: these records are read by
synchronous code (the CLI, a request's login check) in microseconds to milliseconds.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool, QueuePool

from rag.errors import RagError

SCHEMA = "rag_private"
# Every private table is defined on this metadata; SQLite files keep them unqualified.
meta = sa.MetaData(schema=SCHEMA)
Rows = list[Sequence[Any]]  # a read's rows, each a sequence of columns
Params = Mapping[str, Any] | None
_CONNECT_S = 5  # a request waits this long at most for an unreachable PostgreSQL
_MAKING_TABLES = 7253490011  # the advisory lock key of making the tables


class PrivateTables(Protocol):
    """One record's tables (e.g. the users and their sessions), wherever they live."""

    where: str  # said in messages: the file, or the database
    shared: bool  # seen by every machine (a database), not this machine alone (a file)

    def read(self, *statements: sa.Executable, params: Params = None) -> list[Rows]:
        """Each statement's rows, in one connection; empty lists while nothing is
        recorded yet (a read never creates a file). ``params`` fill the statements'
        ``bindparam`` (a statement built once skips SQLAlchemy's per-call build)."""
        ...

    def write(self) -> AbstractContextManager[sa.Connection]:
        """One transaction, with the record's tables made if missing."""
        ...


def insert(db: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update|nothing`` on both kinds."""
    return _INSERTS[db.dialect.name](table)


def added(db: sa.Connection, statement: Any) -> bool:
    """Whether an INSERT ... ON CONFLICT DO NOTHING added its row (psycopg reports no
    rowcount for an INSERT: the row returned says it)."""
    key = list(statement.table.primary_key.columns)
    return db.execute(statement.returning(*key)).first() is not None


_INSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


class SqliteFile:
    """The record in a SQLite file of its own, readable by this account only."""

    shared = False

    def __init__(self, path: Path, tables: Sequence[sa.Table]) -> None:
        self.path, self.where, self._tables = path, str(path), list(tables)
        options = {"schema_translate_map": {SCHEMA: None}}
        self._rw = sa.create_engine(
            "sqlite://", creator=self._open, poolclass=NullPool
        ).execution_options(**options)
        # Reads keep their connections (a login check reads on every request), each
        # dropped when the file was replaced since it was opened.
        ro = sa.create_engine(
            "sqlite://",
            creator=self._open_read_only,
            poolclass=QueuePool,
            pool_reset_on_return=None,  # a read-only SELECT leaves no transaction open
        )
        sa.event.listen(ro, "connect", self._note_file)
        sa.event.listen(ro, "checkout", self._same_file)
        self._ro = ro.execution_options(**options)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        if fresh:
            os.chmod(self.path, 0o600)  # password hashes, key digests, access rights
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False)

    def _inode(self) -> int | None:
        try:
            return self.path.stat().st_ino
        except FileNotFoundError:
            return None

    def _note_file(self, connection: Any, record: Any) -> None:
        record.info["inode"] = self._inode()

    def _same_file(self, connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("inode") != self._inode():
            raise sa.exc.DisconnectionError("the file was replaced")  # the pool reopens

    def read(self, *statements: sa.Executable, params: Params = None) -> list[Rows]:
        if not self.path.exists():
            return [[] for _ in statements]
        with self._ro.connect() as db:
            try:
                return [list(db.execute(s, params)) for s in statements]
            except sa.exc.OperationalError:
                # A table not made yet (a file from an older version, or being created).
                return [[] for _ in statements]

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        with self._rw.begin() as db:
            meta.create_all(db, tables=self._tables)
            yield db


class PostgresTables:
    """The record in PostgreSQL, shared by every machine that names the database."""

    shared = True
    _engines: ClassVar[dict[str, sa.Engine]] = {}  # one pool per database, per process
    _made: ClassVar[set[tuple[str, str]]] = set()
    _lock = threading.Lock()

    def __init__(self, url: str, tables: Sequence[sa.Table]) -> None:
        self._url, self._tables = sync_url(url), list(tables)
        self.where = f"PostgreSQL (RAG_DATABASE_URL), schema {SCHEMA}"

    def _engine(self) -> sa.Engine:
        """One pool per database in the process; the tables made once per process."""
        with self._lock:
            engine = self._engines.get(self._url)
            if engine is None:
                engine = sa.create_engine(
                    self._url,
                    pool_pre_ping=True,  # a restarted server: reconnect, not fail
                    connect_args={"connect_timeout": _CONNECT_S},
                )
                self._engines[self._url] = engine
            key = (self._url, ",".join(t.name for t in self._tables))
            if key not in self._made:
                with self._reach(), engine.begin() as db:
                    # Two processes starting at once would both create: one waits.
                    db.execute(sa.text(f"SELECT pg_advisory_xact_lock({_MAKING_TABLES})"))
                    db.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                    meta.create_all(db, tables=self._tables)
                self._made.add(key)
            return engine

    @contextmanager
    def _reach(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            reason = " ".join(str(exc.orig).split())  # libpq's message spans lines
            raise RagError(
                "The users, keys and access records are kept in PostgreSQL "
                f"(RAG_DATABASE_URL) and it cannot be reached ({reason}): start it, or "
                "check RAG_DATABASE_URL."
            ) from exc

    def read(self, *statements: sa.Executable, params: Params = None) -> list[Rows]:
        engine = self._engine()
        with self._reach(), engine.connect() as db:
            return [list(db.execute(s, params)) for s in statements]

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        engine = self._engine()
        with self._reach(), engine.begin() as db:
            yield db


def copy_file(path: Path, tables: Sequence[sa.Table], target: PrivateTables) -> list[str]:
    """Copy the rows of the SQLite file ``path`` into ``target``, then rename the file
    to ``<name>.copied`` (kept, never deleted). A row whose key ``target`` already holds
    with other values stays as ``target`` has it; the list names each such row."""
    source, kept = SqliteFile(path, tables), []
    with target.write() as db:
        for table in tables:
            key = list(table.primary_key.columns)
            for row in source.read(sa.select(table))[0]:
                values = dict(zip(table.columns.keys(), row, strict=True))
                if added(db, insert(db, table).values(values).on_conflict_do_nothing()):
                    continue
                there = db.execute(sa.select(table).where(*(c == values[c.key] for c in key)))
                if tuple(there.one()) != tuple(row):
                    kept.append(f"{table.name} {'/'.join(str(values[c.key]) for c in key)}")
    path.rename(path.with_name(path.name + ".copied"))
    return kept


def sync_url(url: str) -> str:
    """``postgresql://`` (or ``postgres://``, or another driver's) as psycopg's URL."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg{sep}{rest}" if _kind(scheme) == "postgresql" else url


def _kind(scheme: str) -> str:
    base = scheme.split("+", 1)[0]
    return "postgresql" if base in ("postgres", "postgresql") else base


MakeTables = Callable[[str, Path, Sequence[sa.Table]], PrivateTables]


def _postgres(url: str, path: Path, tables: Sequence[sa.Table]) -> PrivateTables:
    if path.exists():
        # This machine's records from before RAG_DATABASE_URL: never silently left behind
        # (its users could not log in, and a library's rights would be gone).
        raise RagError(
            f"{path} holds this machine's own users, keys or library rights, and "
            "RAG_DATABASE_URL now keeps them in PostgreSQL for every machine: copy them "
            "there with `rag user migrate` (it renames the file once copied)."
        )
    return PostgresTables(url, tables)


def shared_database(url: str | None) -> str | None:
    """RAG_DATABASE_URL when it names PostgreSQL (the records of every machine), else None."""
    url = url or ""
    return url if _kind(url.partition("://")[0]) == "postgresql" else None


# By the scheme of RAG_DATABASE_URL ("" when unset): where the private records live.
KINDS: dict[str, MakeTables] = {
    "": lambda url, path, tables: SqliteFile(path, tables),
    "sqlite": lambda url, path, tables: SqliteFile(path, tables),
    "postgresql": _postgres,
}


def private_tables(
    database_url: str | None, path: Path, tables: Sequence[sa.Table]
) -> PrivateTables:
    """The record whose SQLite file is ``path``, where RAG_DATABASE_URL keeps it."""
    kind = _kind((database_url or "").partition("://")[0])
    make = KINDS.get(kind)
    if make is None:
        raise RagError(
            f"RAG_DATABASE_URL names {kind!r}: the users, keys and access records are kept "
            f"in PostgreSQL or SQLite ({', '.join(k for k in KINDS if k)})."
        )
    return make(database_url or "", path, tables)
