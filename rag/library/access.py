"""Who may read and who may add to which library: the access record (#24).

A library is one Chroma collection of the index. The record (rag/private_db.py: a small
SQLite file beside the users file, or PostgreSQL shared by every replica) names the
libraries, their members (a user, or ``@group``) with a right (``read``, or ``write``,
which includes reading) and who belongs to which group. It is read on every question,
through one short read-only query, so a grant or a revoke made by ``rag library`` takes
effect on the next question of every running process (of every machine, with PostgreSQL).

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
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from rag import private_db
from rag.config import Settings
from rag.errors import RagError
from rag.private_db import PrivateTables, Rows

RIGHTS = ("read", "write")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
t_libraries = sa.Table(
    "libraries",
    private_db.meta,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
)
t_members = sa.Table(
    "members",
    private_db.meta,
    sa.Column("library", sa.Text, primary_key=True),
    sa.Column("who", sa.Text, primary_key=True),  # a user, or @group
    sa.Column("can", sa.Text, nullable=False),
)
t_groups = sa.Table(
    "groups",
    private_db.meta,
    sa.Column("user", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
)
TABLES = (t_libraries, t_members, t_groups)


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


def access_tables(settings: Settings) -> PrivateTables:
    """This machine's access file, or PostgreSQL for every replica (rag/private_db.py)."""
    return private_db.private_tables(settings.database_url, access_path(settings), TABLES)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise RagError(
            f"{name!r} is no library name: 1 to 63 letters, digits, dots, dashes or "
            "underscores, starting with a letter or a digit (a Chroma collection name)."
        )
    return name


class Access:
    """The access record; every method is one short transaction or one read."""

    def __init__(self, tables: PrivateTables | Path) -> None:
        # A path is an access file of its own (tests, and tools that name one).
        self.tables = private_db.SqliteFile(tables, TABLES) if isinstance(tables, Path) else tables

    @classmethod
    def of(cls, settings: Settings) -> Access:
        return cls(access_tables(settings))

    def _read(self, query: sa.Select) -> Rows:
        """A read that never creates the file: no record, nothing recorded."""
        return self.tables.read(query)[0]

    # libraries

    def create(self, name: str) -> bool:
        with self.tables.write() as db:
            new = private_db.insert(db, t_libraries).values(
                name=check_name(name), created=time.time()
            )
            return private_db.added(db, new.on_conflict_do_nothing())

    def delete(self, name: str) -> bool:
        with self.tables.write() as db:
            db.execute(sa.delete(t_members).where(t_members.c.library == name))
            found = db.execute(sa.delete(t_libraries).where(t_libraries.c.name == name))
            return found.rowcount > 0

    def libraries(self) -> list[str]:
        return [r[0] for r in self._read(sa.select(t_libraries.c.name).order_by("name"))]

    def members(self, name: str) -> dict[str, str]:
        m = t_members.c
        rows = self._read(sa.select(m.who, m.can).where(m.library == name).order_by(m.who))
        return dict(rows)  # type: ignore[arg-type]

    def _known(self, db: sa.Connection, name: str) -> None:
        found = db.execute(sa.select(t_libraries.c.name).where(t_libraries.c.name == name))
        if found.first() is None:
            raise RagError(f"There is no library {name!r}: `rag library create {name}` makes it.")

    def grant(self, name: str, who: str, right: str) -> None:
        """``who`` (a user, or ``@group``) may ``right`` the library; replaces what it had."""
        if right not in RIGHTS:
            raise RagError(f"The right is read or write, not {right!r}.")
        if not who.strip("@"):
            raise RagError("Name a user, or a group as @GROUP.")
        with self.tables.write() as db:
            self._known(db, name)
            row = private_db.insert(db, t_members).values(library=name, who=who, can=right)
            db.execute(
                row.on_conflict_do_update(
                    index_elements=["library", "who"], set_={"can": row.excluded.can}
                )
            )

    def revoke(self, name: str, who: str, right: str = "read") -> bool:
        """Revoking read takes every right; revoking write leaves read."""
        m = t_members.c
        this = (m.library == name) & (m.who == who)
        with self.tables.write() as db:
            self._known(db, name)
            if right == "write":
                lower = sa.update(t_members).where(this & (m.can == "write")).values(can="read")
                return db.execute(lower).rowcount > 0
            return db.execute(sa.delete(t_members).where(this)).rowcount > 0

    # groups

    def join(self, user: str, group: str) -> None:
        with self.tables.write() as db:
            row = private_db.insert(db, t_groups).values(user=user, name=group.lstrip("@"))
            db.execute(row.on_conflict_do_nothing())

    def leave(self, user: str, group: str) -> bool:
        g = t_groups.c
        gone = sa.delete(t_groups).where((g.user == user) & (g.name == group.lstrip("@")))
        with self.tables.write() as db:
            return db.execute(gone).rowcount > 0

    def groups(self, user: str) -> list[str]:
        g = t_groups.c
        return [r[0] for r in self._read(sa.select(g.name).where(g.user == user).order_by(g.name))]

    # what a reader may do, read afresh on every call

    def allowed(self, reader: Reader, default: str, rights: Iterable[str] = RIGHTS) -> list[str]:
        """The libraries ``reader`` may use with one of ``rights``: every one for the owner;
        else their own and their groups' grants (and, to read, the default collection while
        it is no library); then only those a key names."""
        wanted = tuple(rights)
        m, g = t_members.c, t_groups.c
        their_groups = sa.select(sa.literal("@") + g.name).where(g.user == reader.user)
        granted = (
            sa.select(m.library)
            .distinct()
            .join(t_libraries, t_libraries.c.name == m.library)
            .where(
                m.can.in_(wanted),
                ((m.who == reader.user) & ~m.who.startswith("@")) | m.who.in_(their_groups),
            )
            .order_by(m.library)
        )
        listed, rows = self.tables.read(sa.select(t_libraries.c.name).order_by("name"), granted)
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
