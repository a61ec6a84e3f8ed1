"""Login users of the app: names and argon2 password hashes, in the private record.

The record (rag/private_db.py) is a SQLite file beside the index, or PostgreSQL shared by
every replica when RAG_DATABASE_URL names it.

Managed with ``rag user add|remove|list|logout``; the app checks passwords against it when a
login is required (see rag/web/auth.py). The same file keeps each name's session version: a
random value that every login cookie carries and that a new password, a removal or
``rag user logout`` replaces, which ends every session of that name in every process
(on every machine, when the record is in PostgreSQL).
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rag import private_db
from rag.config import Settings
from rag.errors import RagError
from rag.private_db import PrivateTables

MIN_PASSWORD = 8
_NAME = re.compile(r"[^\s/\\:]{1,64}")
_hasher = PasswordHasher()
# Checked when the name is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY = _hasher.hash("not a password of anyone")


def users_path(settings: Settings) -> Path:
    """The users file of this machine (where the users live without PostgreSQL)."""
    return settings.users_db or settings.index / "users.sqlite3"


t_users = sa.Table(
    "users",
    private_db.meta,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
t_sessions = sa.Table(
    "sessions",
    private_db.meta,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, nullable=False),
)
# The API keys of rag/web/keys.py, kept in the same record.
t_keys = sa.Table(
    "api_keys",
    private_db.meta,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("libraries", sa.Text),  # a JSON list, or NULL for every readable one
    sa.Column("expires", sa.Float),
    sa.Column("created", sa.Float, nullable=False),
)
TABLES = (t_users, t_sessions)
RECORD = (t_users, t_sessions, t_keys)


def user_tables(settings: Settings) -> PrivateTables:
    """The users and their keys: this machine's file, or PostgreSQL (rag/private_db.py)."""
    return private_db.private_tables(settings.database_url, users_path(settings), RECORD)


class Users:
    def __init__(self, tables: PrivateTables | Path) -> None:
        # A path is a users file of its own (tests, and tools that name one).
        self.tables = private_db.SqliteFile(tables, TABLES) if isinstance(tables, Path) else tables

    @classmethod
    def of(cls, settings: Settings) -> Users:
        return cls(user_tables(settings))

    @property
    def where(self) -> str:
        return self.tables.where

    def make_tables(self) -> None:
        with self.tables.write():
            pass

    @staticmethod
    def _end_sessions(db: sa.Connection, name: str) -> None:
        # Random, not a counter: a user removed and added again never repeats a version.
        new = private_db.insert(db, t_sessions).values(name=name, version=secrets.token_urlsafe(16))
        db.execute(
            new.on_conflict_do_update(
                index_elements=["name"], set_={"version": new.excluded.version}
            )
        )

    def add(self, name: str, password: str) -> bool:
        """Adds the user, or sets a new password; True when the user is new."""
        if not _NAME.fullmatch(name):
            raise RagError("A user name is 1 to 64 characters without spaces, slashes or colons.")
        if len(password) < MIN_PASSWORD:
            raise RagError(f"The password must have at least {MIN_PASSWORD} characters.")
        with self.tables.write() as db:
            found = db.execute(sa.select(t_users.c.name).where(t_users.c.name == name)).first()
            row = private_db.insert(db, t_users).values(
                name=name, hash=_hasher.hash(password), created=time.time()
            )
            db.execute(
                row.on_conflict_do_update(index_elements=["name"], set_={"hash": row.excluded.hash})
            )
            self._end_sessions(db, name)  # a new password: the old one's sessions end
        return found is None

    def remove(self, name: str) -> bool:
        if not self.names():
            return False
        with self.tables.write() as db:
            self._end_sessions(db, name)
            return db.execute(sa.delete(t_users).where(t_users.c.name == name)).rowcount > 0

    def logout(self, name: str) -> None:
        """Ends every session of ``name`` (a password user or one a proxy names)."""
        with self.tables.write() as db:
            self._end_sessions(db, name)

    def names(self) -> list[str]:
        (rows,) = self.tables.read(sa.select(t_users.c.name).order_by(t_users.c.name))
        return [row[0] for row in rows]

    def verify(self, name: str, password: str) -> bool:
        (rows,) = self.tables.read(sa.select(t_users.c.hash).where(t_users.c.name == name))
        stored = rows[0][0] if rows else None
        try:
            _hasher.verify(stored or _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None


# Built once: the lookup runs on every request of the app.
_LOOKUP = sa.select(
    sa.exists().where(t_users.c.name == sa.bindparam("name")),
    sa.select(t_sessions.c.version)
    .where(t_sessions.c.name == sa.bindparam("name"))
    .scalar_subquery(),
)


class SessionVersions:
    """Reads a name's session version on every request: one short read of the users
    record (a file, never created by it, or PostgreSQL), so that a logout, a removal or a
    new password made anywhere ends the sessions at their next request."""

    def __init__(self, tables: PrivateTables | Path) -> None:
        self.tables = private_db.SqliteFile(tables, TABLES) if isinstance(tables, Path) else tables

    def lookup(self, name: str) -> tuple[bool, str]:
        """(is a password user, session version); the version is "" until first set."""
        (rows,) = self.tables.read(_LOOKUP, params={"name": name})
        # No rows: no users file yet, or one from before sessions (the app migrates it
        # when it starts with password login; other modes have no password users).
        return (bool(rows[0][0]), rows[0][1] or "") if rows else (False, "")


# A logout on another replica counts here within REFRESH_S; after STALE_S without an
# answer from the database, no login is trusted (the check fails closed).
REFRESH_S = 1.0
STALE_S = 10.0
_EVERY_USER = sa.select(t_users.c.name)
_EVERY_SESSION = sa.select(t_sessions.c.name, t_sessions.c.version)


class KeptSessionVersions(SessionVersions):
    """The session versions of a shared database, all read by a thread every REFRESH_S
    and answered from memory. The app checks a login on every request on its event loop
    (Chainlit's token check is synchronous): a round trip to PostgreSQL there, or its
    connect timeout while it is down, would stall every open chat."""

    def __init__(self, tables: PrivateTables, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(tables)
        self.clock = clock
        self._known: dict[str, tuple[bool, str]] = {}
        self._read_at = -math.inf

    def refresh(self) -> None:
        users, sessions = self.tables.read(_EVERY_USER, _EVERY_SESSION)
        versions = {name: version or "" for name, version in sessions}
        known = {name: (False, version) for name, version in versions.items()}
        known.update({name: (True, versions.get(name, "")) for (name,) in users})
        self._known, self._read_at = known, self.clock()

    def keep(self) -> KeptSessionVersions:
        """Read now, then every REFRESH_S in a daemon thread, for the process's life."""
        self.refresh()

        def again() -> None:
            while True:
                time.sleep(REFRESH_S)
                with contextlib.suppress(RagError):  # lookup says so once STALE_S old
                    self.refresh()

        threading.Thread(target=again, daemon=True, name="session-versions").start()
        return self

    def lookup(self, name: str) -> tuple[bool, str]:
        if self.clock() - self._read_at > STALE_S:
            raise RagError(
                f"The users record ({self.tables.where}) has not answered for {STALE_S:.0f} s, "
                "so no login can be checked: start PostgreSQL, or check RAG_DATABASE_URL."
            )
        return self._known.get(name, (False, ""))


def session_versions(tables: PrivateTables) -> SessionVersions:
    """What the app checks every request against: a file is read each time (microseconds);
    a shared database is kept in memory, refreshed every REFRESH_S."""
    return KeptSessionVersions(tables).keep() if tables.shared else SessionVersions(tables)
