"""Two machines, one PostgreSQL: people, keys and rights are the same on every replica (#25).

Each "machine" is an index folder of its own (``RAG_INDEX``); both name the same
PostgreSQL (``RAG_DATABASE_URL``), a real cluster of this session (tests/conftest.py).
What is done on machine A with the ``rag`` command (a user, a logout, a key, a grant, a
revoke) holds on machine B at its next request: B's password login (the code the app's
login runs, rag/web/auth.py) and B's running ``rag serve``, over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.library.access import Access, Reader
from rag.web import auth
from rag.web.users import session_versions, user_tables

from servers import rag, start_rag_server
from support_db import fresh_database

pytestmark = pytest.mark.integration  # PostgreSQL and rag serve, in processes

PASSWORD = "a long enough password"


class Machines:
    def __init__(self, root: Path, database_url: str) -> None:
        self.env = {"RAG_DATABASE_URL": database_url, "RAG_COLLECTION": "test"}
        self.a, self.b = root / "machine-a", root / "machine-b"

    def on_a(self, *args: str, stdin: str | None = None) -> str:
        done = rag(*args, index=self.a, stdin=stdin, env=self.env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def settings_b(self) -> Settings:
        return Settings(index=self.b, collection="test", database_url=self.env["RAG_DATABASE_URL"])


@pytest.fixture(scope="module")
def machines(postgres_server, tmp_path_factory) -> Machines:
    url = asyncio.run(fresh_database(postgres_server))
    return Machines(tmp_path_factory.mktemp("replicas"), url)


def test_a_user_added_on_one_machine_logs_in_on_another_until_logged_out(
    machines: Machines,
) -> None:
    machines.on_a("user", "add", "carol", stdin=PASSWORD + "\n")
    settings = machines.settings_b()
    policy = auth.login_policy(settings.with_overrides(auth="password"), "0.0.0.0")
    login = auth.PasswordLogin(settings, policy, auth.password_users(settings, "0.0.0.0"))
    claims = asyncio.run(login.check("carol", PASSWORD, "192.0.2.7"))
    assert claims is not None
    assert asyncio.run(login.check("carol", "not the password", "192.0.2.7")) is None
    sessions = session_versions(user_tables(settings))  # as the app on B checks each request
    assert auth.still_logged_in(policy, sessions, "carol", claims)
    machines.on_a("user", "logout", "carol")
    deadline = time.monotonic() + 30  # B's copy is refreshed every REFRESH_S (1 s)
    while auth.still_logged_in(policy, sessions, "carol", claims):
        assert time.monotonic() < deadline, "the logout on A never reached B"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served_on_b(machines: Machines) -> Iterator[str]:
    # Machine B's server offers the default collection and "team"; keys are made on A.
    machines.on_a("library", "create", "team")
    env = {**machines.env, "RAG_INDEX": str(machines.b), "RAG_SERVE_COLLECTIONS": "test,team"}
    proc, base = start_rag_server(env)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def _models(base: str, key: str) -> httpx.Response:
    return httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _libraries(base: str, key: str) -> set[str]:
    reply = _models(base, key)
    assert reply.status_code == 200, reply.text
    ids = (m["id"] for m in reply.json()["data"])
    return {i for i in ids if i.startswith("rag-") and "+" not in i}  # not the +sources twins


def test_a_key_and_rights_given_on_one_machine_hold_on_another_servers_next_request(
    machines: Machines, served_on_b: str
) -> None:
    key = machines.on_a("key", "create", "dave").splitlines()[0].strip()
    assert _libraries(served_on_b, key) == {"rag-test"}
    machines.on_a("library", "grant", "team", "dave", "read")
    assert _libraries(served_on_b, key) == {"rag-test", "rag-team"}
    machines.on_a("library", "revoke", "team", "dave", "read")
    assert _libraries(served_on_b, key) == {"rag-test"}
    machines.on_a("key", "revoke", key)
    assert _models(served_on_b, key).status_code == 401


def test_a_machines_own_users_wait_for_migrate_then_serve_every_machine(
    machines: Machines, tmp_path: Path
) -> None:
    """A machine with users, keys and rights in its own files from before RAG_DATABASE_URL:
    the commands refuse until `rag user migrate` copies them; then machine B has them."""
    c = tmp_path / "machine-c"
    alone = {"RAG_COLLECTION": "test"}
    assert rag("user", "add", "erin", index=c, stdin=PASSWORD + "\n", env=alone).returncode == 0
    assert rag("library", "create", "erins", index=c, env=alone).returncode == 0
    assert rag("library", "grant", "erins", "erin", "read", index=c, env=alone).returncode == 0
    refused = rag("user", "list", index=c, env=machines.env)
    assert refused.returncode != 0 and "rag user migrate" in refused.stderr
    moved = rag("user", "migrate", index=c, env=machines.env)
    assert moved.returncode == 0, moved.stderr
    assert (c / "users.sqlite3.copied").exists() and (c / "access.sqlite3.copied").exists()
    settings = machines.settings_b()
    assert auth.password_users(settings, "0.0.0.0").verify("erin", PASSWORD)
    assert "erins" in Access.of(settings).readable(Reader("erin"), "test")
