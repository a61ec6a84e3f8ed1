"""Who may read and who may add to which library: the access record (#24).

A library is one Chroma collection of the index. The record, a small SQLite file beside
the users file, names the libraries, their members (a user, or ``@group``) with a right
(``read``, or ``write``, which includes reading) and who belongs to which group. It is read
on every question, through one short read-only query, so a grant or a revoke made by
``rag library`` takes effect on the next question of every running process.

- ``OWNER`` (the machine's own account: the CLI, the app and ``rag serve`` on loopback
  without a login or a per-user key) reads every library.
- Anyone else reads the libraries they or one of their groups are members of, limited
  further by an API key's library list; the default collection (``RAG_COLLECTION``),
  until it is made a library with ``rag library create``, is open to every reader, as
  every document was before libraries.

The set this gives is turned into which collections are queried (rag/library/shelf.py):
a library nobody granted is never searched, not filtered out afterwards.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from rag import private_db
from rag.config import Settings
from rag.errors import RagError

RIGHTS = ("read", "write")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS libraries (name TEXT PRIMARY KEY, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS members (library TEXT NOT NULL, who TEXT NOT NULL, "
    "can TEXT NOT NULL, PRIMARY KEY (library, who))",
    "CREATE TABLE IF NOT EXISTS groups (user TEXT NOT NULL, name TEXT NOT NULL, "
    "PRIMARY KEY (user, name))",
)


@dataclass(frozen=True)
class Reader:
    """Who asks: a user (None: the machine's own account, which owns every library) and,
    for an API key limited to some libraries, those."""

    user: str | None = None
    only: frozenset[str] | None = None


OWNER = Reader()


def access_path(settings: Settings) -> Path:
    """Beside the users file (rag/web/users.py), under the same rules."""
    return (settings.users_db.parent if settings.users_db else settings.index) / "access.sqlite3"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise RagError(
            f"{name!r} is no library name: 1 to 63 letters, digits, dots, dashes or "
            "underscores, starting with a letter or a digit (a Chroma collection name)."
        )
    return name


class Access:
    """The access record; every method opens the file for one short transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        return private_db.connect(self.path, _SCHEMA)

    def _read(self, query: str, args: Iterable = ()) -> list[tuple]:
        """A read that never creates the file: no record, nothing recorded."""
        return self._reads((query, args))[0]

    def _reads(self, *queries: tuple[str, Iterable]) -> list[list[tuple]]:
        """Several reads through one read-only connection (a question pays for one)."""
        if not self.path.exists():
            return [[] for _ in queries]
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            try:
                return [db.execute(q, tuple(args)).fetchall() for q, args in queries]
            except sqlite3.OperationalError:
                # A record another process is creating right now: nothing yet.
                return [[] for _ in queries]

    # libraries

    def create(self, name: str) -> bool:
        with closing(self._connect()) as db, db:
            return (
                db.execute(
                    "INSERT OR IGNORE INTO libraries VALUES (?, ?)", (check_name(name), time.time())
                ).rowcount
                > 0
            )

    def delete(self, name: str) -> bool:
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM members WHERE library = ?", (name,))
            return db.execute("DELETE FROM libraries WHERE name = ?", (name,)).rowcount > 0

    def libraries(self) -> list[str]:
        return [r[0] for r in self._read("SELECT name FROM libraries ORDER BY name")]

    def members(self, name: str) -> dict[str, str]:
        rows = self._read("SELECT who, can FROM members WHERE library = ? ORDER BY who", (name,))
        return dict(rows)

    def _known(self, db: sqlite3.Connection, name: str) -> None:
        if db.execute("SELECT 1 FROM libraries WHERE name = ?", (name,)).fetchone() is None:
            raise RagError(f"There is no library {name!r}: `rag library create {name}` makes it.")

    def grant(self, name: str, who: str, right: str) -> None:
        """``who`` (a user, or ``@group``) may ``right`` the library; replaces what it had."""
        if right not in RIGHTS:
            raise RagError(f"The right is read or write, not {right!r}.")
        if not who.strip("@"):
            raise RagError("Name a user, or a group as @GROUP.")
        with closing(self._connect()) as db, db:
            self._known(db, name)
            db.execute(
                "INSERT INTO members VALUES (?, ?, ?) "
                "ON CONFLICT(library, who) DO UPDATE SET can = excluded.can",
                (name, who, right),
            )

    def revoke(self, name: str, who: str, right: str = "read") -> bool:
        """Revoking read takes every right; revoking write leaves read."""
        with closing(self._connect()) as db, db:
            self._known(db, name)
            if right == "write":
                return (
                    db.execute(
                        "UPDATE members SET can = 'read' WHERE library = ? AND who = ? "
                        "AND can = 'write'",
                        (name, who),
                    ).rowcount
                    > 0
                )
            return (
                db.execute(
                    "DELETE FROM members WHERE library = ? AND who = ?", (name, who)
                ).rowcount
                > 0
            )

    # groups

    def join(self, user: str, group: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR IGNORE INTO groups VALUES (?, ?)", (user, group.lstrip("@")))

    def leave(self, user: str, group: str) -> bool:
        with closing(self._connect()) as db, db:
            return (
                db.execute(
                    "DELETE FROM groups WHERE user = ? AND name = ?", (user, group.lstrip("@"))
                ).rowcount
                > 0
            )

    def groups(self, user: str) -> list[str]:
        rows = self._read("SELECT name FROM groups WHERE user = ? ORDER BY name", (user,))
        return [r[0] for r in rows]

    # what a reader may do, read afresh on every call

    def allowed(self, reader: Reader, default: str, rights: Iterable[str] = RIGHTS) -> list[str]:
        """The libraries ``reader`` may use with one of ``rights``: every one for the owner;
        else their own and their groups' grants (and, to read, the default collection while
        it is no library); then only those a key names."""
        wanted = tuple(rights)
        marks = ",".join("?" * len(wanted))
        listed, rows = self._reads(
            ("SELECT name FROM libraries ORDER BY name", ()),
            (
                "SELECT DISTINCT m.library FROM members m JOIN libraries l ON l.name = m.library "
                f"WHERE m.can IN ({marks}) AND ((m.who = ? AND m.who NOT LIKE '@%') OR m.who IN "
                "(SELECT '@' || name FROM groups WHERE user = ?)) ORDER BY m.library",
                (*wanted, reader.user, reader.user),
            ),
        )
        libraries = [r[0] for r in listed]
        if reader.user is None:
            names = [default, *libraries]
        else:
            open_default = "read" in wanted and default not in libraries
            names = [default] * open_default + [r[0] for r in rows]
        found = list(dict.fromkeys(names))
        return [n for n in found if reader.only is None or n in reader.only]

    def readable(self, reader: Reader, default: str) -> list[str]:
        return self.allowed(reader, default)

    def writable(self, reader: Reader, default: str) -> list[str]:
        return self.allowed(reader, default, ("write",))
