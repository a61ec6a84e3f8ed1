"""``rag library``, ``rag user --group``, ``rag ingest --library`` and ``rag key`` as a person
runs them (#24); what they allow is attacked in tests/web/test_access_matrix.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.library.access import Access, Reader, access_path
from rag.web.keys import Keys
from rag.web.users import users_path

from servers import rag

pytestmark = pytest.mark.integration


def test_libraries_groups_and_keys_from_the_command_line(tmp_path: Path) -> None:
    index = tmp_path / "index"
    settings = Settings(index=index, collection="test")

    def run(*args: str, stdin: str | None = None, ok: bool = True):
        done = rag(*args, index=index, stdin=stdin)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done

    run("user", "add", "carol", "--group", "legal", stdin="carols-password\n")
    run("library", "create", "contracts")
    run("library", "grant", "contracts", "@legal", "write")
    listed = run("library", "list").stdout
    assert "contracts  @legal write" in listed and "test" in listed
    access = Access(access_path(settings))
    assert access.writable(Reader("carol"), "test") == ["contracts"]
    run("user", "leave", "carol", "legal")
    assert access.readable(Reader("carol"), "test") == ["test"]
    run("user", "join", "carol", "legal")

    refused = run("ingest", "--library", "nosuch", str(tmp_path), ok=False)
    assert "rag library create nosuch" in refused.stderr

    created = run("key", "create", "carol", "--library", "contracts", "--expires", "30")
    key = created.stdout.split()[0]
    found = Keys(users_path(settings)).check(key)
    assert found is not None and found.reader() == Reader("carol", frozenset({"contracts"}))
    shown = run("key", "list").stdout
    assert found.id in shown and "contracts" in shown and key not in shown
    run("key", "revoke", found.id)
    assert Keys(users_path(settings)).check(key) is None
    run("key", "revoke", found.id, ok=False)

    run("library", "revoke", "contracts", "@legal", "read")
    assert access.readable(Reader("carol"), "test") == ["test"]
    run("library", "delete", "contracts")
    assert access.libraries() == []
