"""Login users of the app: names and argon2 password hashes in a SQLite file beside the index.

Managed with ``rag user add|remove|list``; the app checks passwords against it when a
login is required (see rag/auth.py).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rag.config import Settings
from rag.errors import RagError

MIN_PASSWORD = 8
_NAME = re.compile(r"[^\s/\\:]{1,64}")
_hasher = PasswordHasher()
# Checked when the name is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY = _hasher.hash("not a password of anyone")


def users_path(settings: Settings) -> Path:
    return settings.users_db or settings.index / "users.sqlite3"


class Users:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path)
        if fresh:
            os.chmod(self.path, 0o600)  # hashes are for this account's eyes only
        db.execute(
            "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, "
            "created REAL NOT NULL)"
        )
        return db

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
        return new

    def remove(self, name: str) -> bool:
        if not self.path.exists():
            return False
        with closing(self._connect()) as db, db:
            return db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

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
