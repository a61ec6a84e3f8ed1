"""Login users of the app: names and argon2 password hashes in a SQLite file beside the index.

Managed with ``rag user add|remove|list|logout``; the app checks passwords against it when a
login is required (see rag/web/auth.py). The same file keeps each name's session version: a
random value that every login cookie carries and that a new password, a removal or
``rag user logout`` replaces, which ends every session of that name in every process.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rag import private_db
from rag.config import Settings
from rag.errors import RagError

MIN_PASSWORD = 8
_NAME = re.compile(r"[^\s/\\:]{1,64}")
_hasher = PasswordHasher()
# Checked when the name is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY = _hasher.hash("not a password of anyone")


def users_path(settings: Settings) -> Path:
    return settings.users_db or settings.index / "users.sqlite3"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, "
    "created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions (name TEXT PRIMARY KEY, version TEXT NOT NULL)",
)


class Users:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        return private_db.connect(self.path, _SCHEMA)

    @staticmethod
    def _end_sessions(db: sqlite3.Connection, name: str) -> None:
        # Random, not a counter: a user removed and added again never repeats a version.
        db.execute(
            "INSERT INTO sessions (name, version) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET version = excluded.version",
            (name, secrets.token_urlsafe(16)),
        )

    def add(self, name: str, password: str) -> bool:
        """Adds the user, or sets a new password; True when the user is new."""
        if not _NAME.fullmatch(name):
            raise RagError("A user name is 1 to 64 characters without spaces, slashes or colons.")
        if len(password) < MIN_PASSWORD:
            raise RagError(f"The password must have at least {MIN_PASSWORD} characters.")
        with closing(self._connect()) as db, db:
            new = db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None
            db.execute(
                "INSERT INTO users (name, hash, created) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET hash = excluded.hash",
                (name, _hasher.hash(password), time.time()),
            )
            self._end_sessions(db, name)  # a new password: the old one's sessions end
        return new

    def remove(self, name: str) -> bool:
        if not self.path.exists():
            return False
        with closing(self._connect()) as db, db:
            self._end_sessions(db, name)
            return db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def logout(self, name: str) -> None:
        """Ends every session of ``name`` (a password user or one a proxy names)."""
        with closing(self._connect()) as db, db:
            self._end_sessions(db, name)

    def names(self) -> list[str]:
        if not self.path.exists():
            return []
        with closing(self._connect()) as db:
            return [row[0] for row in db.execute("SELECT name FROM users ORDER BY name")]

    def verify(self, name: str, password: str) -> bool:
        stored = None
        if self.path.exists():
            with closing(self._connect()) as db:
                row = db.execute("SELECT hash FROM users WHERE name = ?", (name,)).fetchone()
                stored = row[0] if row else None
        try:
            _hasher.verify(stored or _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None


class SessionVersions:
    """Reads a name's session version on every request, in microseconds: one read-only
    connection kept open (reopened when the file is replaced), never creating the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._inode: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection | None:
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            return None
        if self._db is None or inode != self._inode:
            if self._db is not None:
                self._db.close()
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._inode = inode
        return self._db

    def lookup(self, name: str) -> tuple[bool, str]:
        """(is a password user, session version); the version is "" until first set."""
        with self._lock:
            db = self._open()
            if db is None:
                return False, ""
            try:
                row = db.execute(
                    "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1), "
                    "(SELECT version FROM sessions WHERE name = ?1)",
                    (name,),
                ).fetchone()
            except sqlite3.OperationalError:
                # A file from before sessions: the app migrates it when it starts with
                # password login; the other modes have no password users to find.
                return False, ""
            return bool(row[0]), row[1] or ""
