"""The private records' contract (rag/private_db.py): users, session versions, API keys and
library rights behave the same in a SQLite file and in PostgreSQL (a real cluster of this
session, tests/conftest.py; a fresh database per test). Then the choice of kind by
RAG_DATABASE_URL, and what happens to a machine's own files when PostgreSQL takes over.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from rag import private_db
from rag.config import Settings
from rag.errors import RagError
from rag.library import access
from rag.library.access import OWNER, Access, Reader
from rag.private_db import PostgresTables, PrivateTables, SqliteFile
from rag.web import auth, users
from rag.web.keys import Keys
from rag.web.users import SessionVersions, Users, t_keys

from support_db import fresh_database

Make = Callable[[Sequence[sa.Table]], PrivateTables]
DEFAULT = "documents"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def make(request, tmp_path: Path) -> Make:
    """Opens a record's tables: a SQLite file each, or one fresh PostgreSQL database."""
    if request.param == "sqlite":
        return lambda tables: SqliteFile(tmp_path / f"{tables[0].name}.sqlite3", tables)
    url = asyncio.run(fresh_database(request.getfixturevalue("postgres_server")))
    return lambda tables: PostgresTables(url, tables)


def _user_tables(make: Make) -> PrivateTables:
    return make(users.RECORD)


def test_nothing_recorded_reads_as_empty(make: Make) -> None:
    record = _user_tables(make)
    assert Users(record).names() == []
    assert not Users(record).verify("alice", "any password")
    assert SessionVersions(record).lookup("alice") == (False, "")
    assert not Keys(record).exist() and Keys(record).check("rag_abc_def") is None
    rights = Access(make(access.TABLES))
    assert rights.readable(Reader("bob"), DEFAULT) == [DEFAULT]
    assert rights.writable(Reader("bob"), DEFAULT) == []


def test_users_and_session_versions_seen_by_another_handle(make: Make) -> None:
    # Two handles on one record: two processes (or machines, with PostgreSQL).
    here, there = Users(_user_tables(make)), Users(_user_tables(make))
    sessions = SessionVersions(_user_tables(make))
    assert here.add("alice", "correct horse")
    assert not here.add("alice", "correct horse battery")  # a new password, same user
    assert there.verify("alice", "correct horse battery")
    assert not there.verify("alice", "correct horse")
    assert there.names() == ["alice"]
    is_user, version = sessions.lookup("alice")
    assert is_user and version
    there.logout("alice")
    assert sessions.lookup("alice") == (True, sessions.lookup("alice")[1]) != (True, version)
    assert there.remove("alice") and not here.remove("alice")
    assert sessions.lookup("alice")[0] is False and here.names() == []


def test_kept_session_versions_follow_the_record_and_fail_closed_when_it_is_silent(
    make: Make,
) -> None:
    # What the app checks every request against with PostgreSQL: read in a thread, answered
    # from memory. Refreshed here by hand, and aged by a clock the test moves.
    now = [0.0]
    people = Users(_user_tables(make))
    kept = users.KeptSessionVersions(_user_tables(make), clock=lambda: now[0])
    people.add("alice", "correct horse")
    kept.refresh()
    is_user, version = kept.lookup("alice")
    assert is_user and version and kept.lookup("nobody") == (False, "")
    people.logout("alice")  # on another replica
    assert kept.lookup("alice") == (True, version)  # not yet read
    kept.refresh()
    assert kept.lookup("alice")[1] not in ("", version)
    now[0] += users.STALE_S + 1  # no answer from the record since
    with pytest.raises(RagError, match="no login can be checked"):
        kept.lookup("alice")


def test_keys_are_digests_checked_revoked_and_expired(make: Make) -> None:
    record = _user_tables(make)
    keys, other = Keys(record), Keys(_user_tables(make))
    key = keys.create("alice", libraries=["shared"])
    stored = record.read(sa.select(t_keys))[0]
    assert len(stored) == 1 and key.split("_", 2)[2] not in repr(stored)
    found = other.check(key)
    assert found is not None and found.reader() == Reader("alice", frozenset({"shared"}))
    assert other.check(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    ending = keys.create("bob", expires_days=1)
    with record.write() as db:
        db.execute(sa.update(t_keys).where(t_keys.c.user == "bob").values(expires=time.time() - 1))
    assert other.check(ending) is None
    assert [k.user for k in other.list()] == ["alice", "bob"]
    assert other.revoke(key) and keys.check(key) is None and other.exist()


def test_library_rights_grants_groups_and_revokes(make: Make) -> None:
    record = Access(make(access.TABLES))
    other = Access(make(access.TABLES))
    record.join("alice", "@team")
    for name in ("shared", "team", "vault"):
        assert record.create(name)
    assert not record.create("shared")
    record.grant("shared", "bob", "read")
    record.grant("team", "@team", "read")
    record.grant("vault", "alice", "write")
    assert other.readable(OWNER, DEFAULT) == [DEFAULT, "shared", "team", "vault"]
    assert other.readable(Reader("alice"), DEFAULT) == [DEFAULT, "team", "vault"]
    assert other.readable(Reader("bob"), DEFAULT) == [DEFAULT, "shared"]
    assert other.readable(Reader("@team"), DEFAULT) == [DEFAULT]  # a group is no user
    assert other.writable(Reader("alice"), DEFAULT) == ["vault"]
    assert other.members("vault") == {"alice": "write"} and other.groups("alice") == ["team"]
    record.revoke("vault", "alice", "write")
    assert other.writable(Reader("alice"), DEFAULT) == [] and "vault" in other.readable(
        Reader("alice"), DEFAULT
    )
    record.revoke("vault", "alice")
    assert record.leave("alice", "team") and not record.leave("alice", "team")
    assert other.readable(Reader("alice"), DEFAULT) == [DEFAULT]
    with pytest.raises(RagError, match="no library 'nosuch'"):
        record.grant("nosuch", "bob", "read")
    assert record.delete("shared") and other.readable(Reader("bob"), DEFAULT) == [DEFAULT]


def test_the_kind_follows_the_database_url(tmp_path: Path) -> None:
    here = Settings(index=tmp_path / "index")
    assert isinstance(users.user_tables(here), SqliteFile)
    chats_in_sqlite = here.with_overrides(database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db")
    assert isinstance(access.access_tables(chats_in_sqlite), SqliteFile)
    shared = here.with_overrides(database_url="postgres://rag@db.example/rag")
    found = users.user_tables(shared)  # connects at its first use, not here
    assert isinstance(found, PostgresTables) and found.shared
    with pytest.raises(RagError, match="PostgreSQL or SQLite"):
        users.user_tables(here.with_overrides(database_url="mysql://rag@db.example/rag"))


def test_a_machines_own_file_is_never_silently_left_behind(tmp_path: Path) -> None:
    here = Settings(index=tmp_path / "index")
    Users.of(here).add("alice", "correct horse")
    Access.of(here).create("vault")
    shared = here.with_overrides(database_url="postgresql://rag@db.example/rag")
    for opened in (Users.of, Keys.of, Access.of):
        with pytest.raises(RagError, match="rag user migrate"):
            opened(shared)


def test_a_users_file_from_before_session_versions_gains_their_table(tmp_path: Path) -> None:
    settings = Settings(index=tmp_path / "index", auth="password")
    made = Users(users.users_path(settings))
    made.add("alice", "correct horse")
    with sqlite3.connect(users.users_path(settings)) as db:
        db.execute("DROP TABLE sessions")
    assert SessionVersions(users.user_tables(settings)).lookup("alice") == (False, "")
    auth.password_users(settings, "0.0.0.0")  # what the app runs at its start
    assert SessionVersions(users.user_tables(settings)).lookup("alice")[0]


def test_copying_a_file_keeps_what_the_database_has_and_names_it(make: Make, tmp_path) -> None:
    old = tmp_path / "machine" / "users.sqlite3"
    mine = Users(old)
    mine.add("alice", "alice's password")
    mine.add("bob", "bob's own password")
    key = Keys(old).create("alice")
    target = _user_tables(make)
    Users(target).add("bob", "bob's other password")
    kept = private_db.copy_file(old, users.RECORD, target)
    assert "users bob" in kept and not old.exists()
    assert old.with_name("users.sqlite3.copied").exists()  # kept, never deleted
    shared = Users(target)
    assert shared.verify("alice", "alice's password") and Keys(target).check(key) is not None
    assert shared.verify("bob", "bob's other password")


def test_an_unreachable_database_says_what_to_start(processes) -> None:
    record = PostgresTables("postgresql://nobody@127.0.0.1:9/none", users.RECORD)
    with pytest.raises(RagError, match=r"cannot be reached .*start it, or check RAG_DATABASE_URL"):
        Users(record).names()


def test_migrate_without_postgresql_says_what_to_set(tmp_path: Path) -> None:
    from rag.cli.users import cmd_user_migrate

    with pytest.raises(RagError, match="set RAG_DATABASE_URL"):
        cmd_user_migrate(argparse.Namespace(), Settings(index=tmp_path / "index"))
