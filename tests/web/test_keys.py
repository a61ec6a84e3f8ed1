"""Per-user API keys of ``rag serve`` (#24): shown once, stored hashed, limited, ended."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.library.access import Reader
from rag.web.keys import Keys


def test_a_key_is_stored_only_as_its_digest_and_acts_as_its_user(tmp_path: Path):
    keys = Keys(db := tmp_path / "users.sqlite3")
    key = keys.create("alice", libraries=["shared"])
    stored = sqlite3.connect(db).execute("SELECT * FROM api_keys").fetchall()
    assert key.split("_", 2)[2] not in repr(stored)
    found = keys.check(key)
    assert found is not None and found.reader() == Reader("alice", frozenset({"shared"}))
    assert keys.check(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.check("rag_" + "0" * 12 + "_guess") is None
    assert keys.check("not a key") is None


def test_an_expired_or_revoked_key_opens_nothing(tmp_path: Path):
    keys = Keys(db := tmp_path / "users.sqlite3")
    key = keys.create("bob", expires_days=1)
    assert keys.check(key) is not None
    sqlite3.connect(db).execute(
        "UPDATE api_keys SET expires = ?", (time.time() - 1,)
    ).connection.commit()
    assert keys.check(key) is None
    fresh = keys.create("bob")
    assert [k.user for k in keys.list()] == ["bob", "bob"]
    assert keys.revoke(fresh.split("_")[1])
    assert keys.check(fresh) is None
    with pytest.raises(RagError, match="above 0"):
        keys.create("bob", expires_days=0)


def test_without_a_users_file_there_are_no_keys(tmp_path: Path):
    keys = Keys(db := tmp_path / "users.sqlite3")
    assert not keys.exist()
    assert keys.check("rag_abc_def") is None
    assert not db.exists()
