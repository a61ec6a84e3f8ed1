"""The Chroma server of the README's team recipe answers nobody without its token (issue 20):
a page that rebinds a name to the server, or anyone else who reaches it, gets nothing.

``chroma run`` (chromadb 1.x's Rust server) has no authentication at all; Chroma's Python
server (``uvicorn chromadb.app:app``, same package) has token authentication, so the
recipe runs that one. The last test checks the first fact, so that the day ``chroma run``
learns tokens this file says so."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from servers import free_port, wait_until_up
from support_store import ChromaServer

pytestmark = pytest.mark.integration  # a real Chroma server process in every test

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
TOKEN_AUTH = {
    "CHROMA_SERVER_AUTHN_PROVIDER": "chromadb.auth.token_authn.TokenAuthenticationServerProvider",
    "ANONYMIZED_TELEMETRY": "False",
}


class TokenChroma:
    """The README's recipe: Chroma's Python server, persistent, requiring ``token``."""

    def __init__(self, path: Path, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = path.with_suffix(".log")
        env = {
            **os.environ,
            **TOKEN_AUTH,
            "IS_PERSISTENT": "1",
            "PERSIST_DIRECTORY": str(path),
            "CHROMA_SERVER_AUTHN_CREDENTIALS": token,
        }
        command = [sys.executable, "-m", "uvicorn", "chromadb.app:app", "--host", "127.0.0.1"]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until_up(f"{self.url}/api/v2/heartbeat", self.proc, self.log.read_text, "chroma", 120)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def token():
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def guarded_chroma(tmp_path_factory, token):
    server = TokenChroma(tmp_path_factory.mktemp("tokenchroma") / "data", token)
    yield server
    server.stop()


def test_the_chroma_server_answers_nobody_without_its_token(guarded_chroma, token):
    url = guarded_chroma.url + COLLECTIONS
    assert httpx.get(url).status_code == 403
    # DNS rebinding: the attacker's name, re-pointed at the server; the page has no token.
    assert httpx.get(url, headers={"Host": "rebind.attacker.example"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": "Bearer not-the-token"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_rag_works_through_it_with_rag_chroma_token(guarded_chroma, token, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour.md").write_text("# Harbour\n\nThe harbour master rings the bell at noon.\n")
    env = {**os.environ, "RAG_CHROMA_URL": guarded_chroma.url, "RAG_INDEX": str(tmp_path / "i")}

    def rag(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    refused = rag("rag.cli", "sources")  # no token: the library cannot even be listed
    assert refused.returncode != 0 and "set RAG_CHROMA_TOKEN" in refused.stderr
    done = rag("ingest", str(docs), RAG_CHROMA_TOKEN=token)
    assert done.returncode == 0, done.stderr
    listed = rag("rag.cli", "sources", RAG_CHROMA_TOKEN=token)
    assert listed.returncode == 0 and "harbour.md" in listed.stdout


def test_chroma_run_itself_has_no_authentication(tmp_path, monkeypatch):
    for name, value in {**TOKEN_AUTH, "CHROMA_SERVER_AUTHN_CREDENTIALS": "t" * 40}.items():
        monkeypatch.setenv(name, value)
    server = ChromaServer(tmp_path / "data")
    try:
        answer = httpx.get(server.url + COLLECTIONS, headers={"Host": "rebind.attacker.example"})
        assert answer.status_code == 200, "chroma run checks tokens now: README can use it"
    finally:
        server.stop()
