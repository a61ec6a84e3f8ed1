"""API keys per user for ``rag serve`` (#24), kept with the users (rag/web/users.py).

The users' record is this machine's users file, or PostgreSQL for every replica
(rag/private_db.py).

A key is ``rag_<id>_<secret>``: the id finds its row, the secret (32 random bytes) is
stored only as its SHA-256 digest, compared in constant time. A fast digest is the right
one here: the secret is random, not a password a person chose, so no guess can be
checked faster than the key space allows. A key acts as its user, limited to the
libraries named on it (none named: every library the user may read), until it expires
or ``rag key revoke`` removes it; each request reads the row again, so a revoke takes
effect on the next request of a running server (of every replica, with PostgreSQL).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from rag import private_db
from rag.config import Settings
from rag.errors import RagError
from rag.library.access import OWNER, Reader, check_name
from rag.private_db import PrivateTables, Rows
from rag.web import security
from rag.web.users import t_keys, user_tables

PREFIX = "rag_"
DAY = 86400.0
_INFO = (t_keys.c.id, t_keys.c.user, t_keys.c.libraries, t_keys.c.expires, t_keys.c.created)


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
    def __init__(self, tables: PrivateTables | Path) -> None:
        # A path is a users file of its own (tests, and tools that name one).
        self.tables = (
            private_db.SqliteFile(tables, [t_keys]) if isinstance(tables, Path) else tables
        )

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        return cls(user_tables(settings))  # the keys live in the users' record

    def _rows(self, query: sa.Select) -> Rows:
        """Read-only: a server never creates the users file."""
        return self.tables.read(query)[0]

    def create(
        self, user: str, libraries: list[str] | None = None, expires_days: float | None = None
    ) -> str:
        """A new key for ``user``; the only time its text is seen."""
        if expires_days is not None and expires_days <= 0:
            raise RagError("--expires takes a number of days above 0.")
        names = None if not libraries else sorted({check_name(n) for n in libraries})
        ident, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        expires = None if expires_days is None else time.time() + expires_days * DAY
        with self.tables.write() as db:
            db.execute(
                t_keys.insert().values(
                    id=ident,
                    digest=_digest(secret),
                    user=user,
                    libraries=None if names is None else json.dumps(names),
                    expires=expires,
                    created=time.time(),
                )
            )
        return f"{PREFIX}{ident}_{secret}"

    def revoke(self, ident: str) -> bool:
        ident = ident.removeprefix(PREFIX).split("_")[0]  # the key itself names its id too
        with self.tables.write() as db:
            return db.execute(sa.delete(t_keys).where(t_keys.c.id == ident)).rowcount > 0

    def list(self) -> list[KeyInfo]:
        rows = self._rows(sa.select(*_INFO).order_by(t_keys.c.created))
        return [_info(*row) for row in rows]

    def exist(self) -> bool:
        return bool(self._rows(sa.select(t_keys.c.id).limit(1)))

    def check(self, key: str) -> KeyInfo | None:
        """The key's row when ``key`` is a key of this file, unexpired; else None."""
        if not key.startswith(PREFIX) or key.count("_") < 2:
            return None
        ident, secret = key.removeprefix(PREFIX).split("_", 1)
        rows = self._rows(sa.select(t_keys.c.digest, *_INFO).where(t_keys.c.id == ident))
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
