"""The access record (#24): who reads and who writes which library, read afresh on every
call. The end-to-end attacks are in tests/web/test_access_matrix.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import RagError
from rag.library.access import OWNER, Access, Reader

DEFAULT = "documents"


@pytest.fixture
def access(tmp_path: Path) -> Access:
    record = Access(tmp_path / "access.sqlite3")
    record.join("alice", "team")
    for name in ("shared", "team", "vault"):
        record.create(name)
    record.grant("shared", "alice", "read")
    record.grant("shared", "bob", "read")
    record.grant("team", "@team", "read")
    record.grant("vault", "alice", "write")
    return record


def test_without_a_record_everyone_reads_the_default_collection_as_before(tmp_path: Path):
    record = Access(db := tmp_path / "access.sqlite3")
    assert record.readable(OWNER, DEFAULT) == [DEFAULT]
    assert record.readable(Reader("bob"), DEFAULT) == [DEFAULT]
    assert record.writable(Reader("bob"), DEFAULT) == []
    assert not db.exists()  # reading never makes the file


def test_a_reader_gets_their_grants_and_their_groups_grants(access: Access):
    assert access.readable(OWNER, DEFAULT) == [DEFAULT, "shared", "team", "vault"]
    assert access.readable(Reader("alice"), DEFAULT) == [DEFAULT, "shared", "team", "vault"]
    assert access.readable(Reader("bob"), DEFAULT) == [DEFAULT, "shared"]
    assert access.readable(Reader("mallory"), DEFAULT) == [DEFAULT]
    assert access.writable(Reader("alice"), DEFAULT) == ["vault"]
    # A key limited to some libraries reads those of them its user may read.
    limited = Reader("alice", frozenset({"shared", "nosuch"}))
    assert access.readable(limited, DEFAULT) == ["shared"]
    assert access.readable(Reader("bob", frozenset({"vault"})), DEFAULT) == []


def test_a_group_name_is_no_user_name(access: Access):
    # A user named "@team" or "team" does not become a member of the group's libraries.
    assert "team" not in access.readable(Reader("@team"), DEFAULT)
    assert "team" not in access.readable(Reader("team"), DEFAULT)


def test_revokes_and_group_changes_count_at_once(access: Access):
    access.revoke("vault", "alice", "write")
    assert access.writable(Reader("alice"), DEFAULT) == []
    assert "vault" in access.readable(Reader("alice"), DEFAULT)  # write revoked: read stays
    access.revoke("vault", "alice", "read")
    assert "vault" not in access.readable(Reader("alice"), DEFAULT)
    access.leave("alice", "team")
    assert "team" not in access.readable(Reader("alice"), DEFAULT)
    access.delete("shared")
    assert access.readable(Reader("bob"), DEFAULT) == [DEFAULT]


def test_the_default_collection_made_a_library_is_closed_to_non_members(access: Access):
    access.create(DEFAULT)
    assert DEFAULT not in access.readable(Reader("bob"), DEFAULT)
    assert DEFAULT in access.readable(OWNER, DEFAULT)
    access.grant(DEFAULT, "bob", "read")
    assert DEFAULT in access.readable(Reader("bob"), DEFAULT)


def test_bad_names_and_rights_are_refused_clearly(access: Access):
    with pytest.raises(RagError, match="no library name"):
        access.create("../etc")
    with pytest.raises(RagError, match="no library 'nosuch'"):
        access.grant("nosuch", "bob", "read")
    with pytest.raises(RagError, match="read or write"):
        access.grant("shared", "bob", "admin")
    assert access.readable(Reader("bob"), DEFAULT) == [DEFAULT, "shared"]  # nothing lost
