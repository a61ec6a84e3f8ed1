"""API keys per user for ``rag serve`` (#24), kept in the users file (rag/web/users.py).

A key is ``rag_<id>_<secret>``: the id finds its row, the secret (32 random bytes) is
stored only as its SHA-256 digest, compared in constant time. A fast digest is the right
one here: the secret is random, not a password a person chose, so no guess can be
checked faster than the key space allows. A key acts as its user, limited to the
libraries named on it (none named: every library the user may read), until it expires
or ``rag key revoke`` removes it; each request reads the row again, so a revoke takes
effect on the next request of a running server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from rag import private_db
from rag.errors import RagError
from rag.library.access import OWNER, Reader, check_name
from rag.web import security

PREFIX = "rag_"
DAY = 86400.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, digest TEXT NOT NULL, "
    "user TEXT NOT NULL, libraries TEXT, expires REAL, created REAL NOT NULL)"
)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    id: str
    user: str
    libraries: list[str] | None
    expires: float | None
    created: float

    def reader(self) -> Reader:
        return Reader(self.user, None if self.libraries is None else frozenset(self.libraries))


class Keys:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        return private_db.connect(self.path, [_SCHEMA])

    def _rows(self, query: str, args: tuple = ()) -> list[tuple]:
        """Read-only: a server never creates the users file."""
        if not self.path.exists():
            return []
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            try:
                return db.execute(query, args).fetchall()
            except sqlite3.OperationalError:
                return []  # no key was ever made

    def create(
        self, user: str, libraries: list[str] | None = None, expires_days: float | None = None
    ) -> str:
        """A new key for ``user``; the only time its text is seen."""
        if expires_days is not None and expires_days <= 0:
            raise RagError("--expires takes a number of days above 0.")
        names = None if not libraries else sorted({check_name(n) for n in libraries})
        ident, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        expires = None if expires_days is None else time.time() + expires_days * DAY
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?)",
                (
                    ident,
                    _digest(secret),
                    user,
                    None if names is None else json.dumps(names),
                    expires,
                    time.time(),
                ),
            )
        return f"{PREFIX}{ident}_{secret}"

    def revoke(self, ident: str) -> bool:
        ident = ident.removeprefix(PREFIX).split("_")[0]  # the key itself names its id too
        with closing(self._connect()) as db, db:
            return db.execute("DELETE FROM api_keys WHERE id = ?", (ident,)).rowcount > 0

    def list(self) -> list[KeyInfo]:
        rows = self._rows(
            "SELECT id, user, libraries, expires, created FROM api_keys ORDER BY created"
        )
        return [_info(*row) for row in rows]

    def exist(self) -> bool:
        return bool(self._rows("SELECT 1 FROM api_keys LIMIT 1"))

    def check(self, key: str) -> KeyInfo | None:
        """The key's row when ``key`` is a key of this file, unexpired; else None."""
        if not key.startswith(PREFIX) or key.count("_") < 2:
            return None
        ident, secret = key.removeprefix(PREFIX).split("_", 1)
        rows = self._rows(
            "SELECT digest, id, user, libraries, expires, created FROM api_keys WHERE id = ?",
            (ident,),
        )
        if not rows:
            _digest(secret)  # the same work as for a known id
            return None
        digest, *info = rows[0]
        if not hmac.compare_digest(digest, _digest(secret)):
            return None
        found = _info(*info)
        if found.expires is not None and found.expires <= time.time():
            return None
        return found


def _info(
    ident: str, user: str, libraries: str | None, expires: float | None, created: float
) -> KeyInfo:
    return KeyInfo(
        ident, user, None if libraries is None else json.loads(libraries), expires, created
    )


class Readers:
    """Who a request is: the owner with ``RAG_SERVE_API_KEY`` (or with no key at all, on
    loopback), else the user of a per-user key (rag/web/keys.py), read on every request
    so that a revoked key is refused at once. Once keys exist, one is always required."""

    def __init__(self, api_key: str | None, keys: Keys | None) -> None:
        self.api_key, self.keys = api_key, keys
        self._keys_seen = False

    def required(self) -> bool:
        if not (self.api_key or self._keys_seen) and self.keys is not None:
            self._keys_seen = self.keys.exist()
        return bool(self.api_key) or self._keys_seen

    def of(self, authorization: str | None) -> Reader | None:
        if self.api_key and security.key_matches(authorization, self.api_key):
            return OWNER
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Bearer" or self.keys is None:
            return None
        found = self.keys.check(token.strip())
        return None if found is None else found.reader()
