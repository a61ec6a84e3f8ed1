"""Team libraries, attacked from every entry point (#24): two users, one group, three
libraries (one shared, one for the group, one private to alice). For ``rag ask`` as a
user, a whole-document summary of a named file, an export, and ``rag serve`` with each
user's key and with a key limited to one library, no passage of a library the asker
cannot read appears; a revoke takes effect on the next question of a running server.

The world is built once per module through the same code the commands run (the access
record, the key store, the ingest pipeline with the real embedding model); the attacks
run in real processes. The chat model is a scripted server at the model boundary: its
words do not matter here, only which passages reach it and the client.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.ingest.pipeline import Ingestor, discover
from rag.library.access import Access, access_path
from rag.library.search import open_library
from rag.web.keys import Keys
from rag.web.users import Users, users_path

from servers import App, rag, start_rag_server
from support_security import ScriptedModel, socketio_chat
from support_store import chroma_server  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.integration

# One document per library, each with a word only it holds.
DOCS = {
    "shared": ("handbook.txt", "The code word of the shared handbook is MAPLE."),
    "team": ("roadmap.txt", "The code word of the team roadmap is CEDAR."),
    "vault": ("diary.txt", "The code word of the private diary is BIRCH."),
}
WORD = {name: text.split()[-1].rstrip(".") for name, (_, text) in DOCS.items()}
READS = {"alice": {"shared", "team", "vault"}, "bob": {"shared"}}
QUESTION = "What is the code word?"
PASSWORDS = {"alice": "alice-password", "bob": "bobs-password"}


class World:
    def __init__(self, settings: Settings, env: dict[str, str], keys: dict[str, str]) -> None:
        self.settings, self.env, self.keys = settings, env, keys

    def rag(self, *args: str, stdin: str | None = None):
        return rag(*args, index=self.settings.index, stdin=stdin, env=self.env)


def build_world(root: Path, embedder, extra_env: dict[str, str]) -> World:
    settings = Settings(
        index=root / "index",
        collection=extra_env["RAG_COLLECTION"],
        chroma_url=extra_env.get("RAG_CHROMA_URL"),
    )
    users = Users(users_path(settings))
    for name, password in PASSWORDS.items():
        users.add(name, password)
    access = Access(access_path(settings))
    access.join("alice", "team")
    for name in DOCS:
        access.create(name)
    access.grant("shared", "alice", "read")
    access.grant("shared", "bob", "read")
    access.grant("team", "@team", "read")
    access.grant("vault", "alice", "write")
    for name, (file, text) in DOCS.items():
        folder = root / "docs" / name
        folder.mkdir(parents=True)
        (folder / file).write_text(text + "\n")
        library = open_library(settings.with_overrides(collection=name), embedder)
        Ingestor(library).run(discover([folder]))
        library.store.close()
    store = Keys(users_path(settings))
    keys = {
        "alice": store.create("alice"),
        "bob": store.create("bob"),
        "alice-shared": store.create("alice", libraries=["shared"]),
    }
    return World(settings, {"RAG_MIN_SIMILARITY": "0", **extra_env}, keys)


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel(["The code word is in the passages [1] [2] [3]."])
    yield server
    server.shutdown()


@pytest.fixture(scope="module", params=["embedded", "server"])
def world(request, tmp_path_factory, embedder, model) -> World:
    """The same world on the embedded store and on a Chroma server (its collections
    named apart from other tests' on the shared server)."""
    root = tmp_path_factory.mktemp(f"access-{request.param}")
    env = {"RAG_LLM": f"openai:m@{model.base}", "RAG_COLLECTION": "test"}
    if request.param == "server":
        server = request.getfixturevalue("chroma_server")
        env |= {"RAG_CHROMA_URL": server.url, "RAG_COLLECTION": "matrix-default"}
    return build_world(root, embedder, env)


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[str]:
    proc, base = start_rag_server({**world.env, "RAG_INDEX": str(world.settings.index)})
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def _words(text: str) -> set[str]:
    """The libraries whose passage (its word) or file name appears in ``text``."""
    return {name for name, word in WORD.items() if word in text or DOCS[name][0] in text}


def _models(base: str, key: str) -> set[str]:
    reply = httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert reply.status_code == 200, reply.text
    return {m["id"] for m in reply.json()["data"] if m["id"].startswith("rag-")}


def _ask(base: str, key: str, model: str, chat: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if chat:
        headers["X-Conversation-Id"] = chat
    return httpx.post(
        f"{base}/chat/completions",
        headers=headers,
        json={"model": model, "messages": [{"role": "user", "content": QUESTION}]},
        timeout=120,
    )


def _passages(reply: httpx.Response) -> set[str]:
    assert reply.status_code == 200, reply.text
    return _words(json.dumps(reply.json()["rag"]["sources"]))


# -- rag serve -------------------------------------------------------------------------


def test_models_lists_only_the_libraries_a_key_may_read(world: World, served: str) -> None:
    listed = {who: _models(served, key) for who, key in world.keys.items()}
    assert {"rag-shared", "rag-team", "rag-vault"} <= listed["alice"]
    assert not {"rag-team", "rag-vault"} & listed["bob"]
    assert "rag-shared" in listed["bob"]
    assert not {"rag-team", "rag-vault"} & listed["alice-shared"]
    assert "rag-shared" in listed["alice-shared"]


def test_an_unreadable_library_answers_as_if_it_did_not_exist(world: World, served: str) -> None:
    headers = {"Authorization": f"Bearer {world.keys['bob']}"}
    missing = httpx.get(f"{served}/models/rag-nosuch", headers=headers, timeout=30)
    hidden = httpx.get(f"{served}/models/rag-vault", headers=headers, timeout=30)
    assert missing.status_code == hidden.status_code == 404
    asked = _ask(served, world.keys["bob"], "rag-vault")
    assert asked.status_code == 404
    assert hidden.text.replace("rag-vault", "X") == missing.text.replace("rag-nosuch", "X")
    assert "BIRCH" not in asked.text and "rag-vault" not in _models(served, world.keys["bob"])
    limited = _ask(served, world.keys["alice-shared"], "rag-team")
    assert limited.status_code == 404


def test_each_key_gets_passages_of_readable_libraries_only(world: World, served: str) -> None:
    for who, key in world.keys.items():
        for library in _models(served, key):
            found = _passages(_ask(served, key, library))
            name = library.removeprefix("rag-")
            if name in DOCS:
                assert found == {name}, (who, library, found)
    assert _passages(_ask(served, world.keys["alice"], "rag-vault")) == {"vault"}


def test_a_wrong_or_revoked_key_is_refused(world: World, served: str) -> None:
    key = Keys(users_path(world.settings)).create("bob")
    assert _models(served, key)
    ident = key.split("_")[1]
    done = world.rag("key", "revoke", ident)
    assert done.returncode == 0, done.stderr
    refused = httpx.get(f"{served}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert refused.status_code == 401
    wrong = httpx.get(f"{served}/models", headers={"Authorization": f"Bearer {key}x"}, timeout=30)
    assert wrong.status_code == 401


def test_a_revoke_takes_effect_on_the_next_question_of_a_running_server(
    world: World, served: str
) -> None:
    bob = world.keys["bob"]
    granted = world.rag("library", "grant", "team", "bob", "read")
    assert granted.returncode == 0, granted.stderr
    chat = str(uuid.uuid4())
    assert _passages(_ask(served, bob, "rag-team", chat)) == {"team"}
    revoked = world.rag("library", "revoke", "team", "bob", "read")
    assert revoked.returncode == 0, revoked.stderr
    assert "rag-team" not in _models(served, bob)
    assert _ask(served, bob, "rag-team").status_code == 404
    # The stored chat goes on, but no longer reads the library, and its export (the
    # passages shown before the revoke included) holds nothing of it.
    resumed = _ask(served, bob, "rag-shared", chat)
    assert _passages(resumed) <= {"shared"}
    export = world.rag("chats", "export", chat, "--user", "bob")
    assert export.returncode == 0, export.stderr
    assert "CEDAR" not in export.stdout
    assert "team" in export.stdout  # it says which library was withheld


# -- the command line ------------------------------------------------------------------


def _asked(world: World, user: str, question: str = QUESTION) -> dict:
    done = world.rag("ask", "--user", user, "--json", question)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_rag_ask_as_a_user_reads_only_their_libraries(world: World) -> None:
    for user, readable in READS.items():
        answer = _asked(world, user)
        found = _words(json.dumps(answer["sources"]))
        assert found and found <= readable, (user, found)
        assert {s["library"] for s in answer["sources"]} <= readable
    assert _words(json.dumps(_asked(world, "alice")["sources"])) == READS["alice"]


def test_a_summary_of_a_named_file_of_an_unreadable_library_is_refused(world: World) -> None:
    denied = world.rag("summarize", "--user", "bob", "--json", "diary.txt")
    assert denied.returncode != 0
    assert "BIRCH" not in denied.stdout + denied.stderr
    allowed = world.rag("summarize", "--user", "alice", "--json", "diary.txt")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["source"].endswith("diary.txt")
    # Asked in a question, the file is not found among bob's libraries: no summary of it.
    asked = _asked(world, "bob", "Summarize diary.txt")
    assert "BIRCH" not in json.dumps(asked)
    assert not (asked.get("summary") or "").endswith("diary.txt")


# -- the app -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(world: World) -> Iterator[str]:
    env = {**world.env, "RAG_AUTH": "password", "RAG_COLLECTION": world.settings.collection}
    running = App(world.settings.index, env, unset=("CHAINLIT_AUTH_SECRET",))
    yield running.url
    running.close()


def _app_events(url: str, user: str) -> str:
    """Everything the app sent to ``user`` for one question in a new chat (its settings
    panel, the answer, its sources line, the side passages), as text."""
    login = {"username": user, "password": PASSWORDS[user]}
    logged = httpx.post(f"{url}/login", data=login, timeout=30)
    assert logged.status_code == 200, logged.text
    cookie = "; ".join(f"{k}={v}" for k, v in logged.cookies.items())
    return json.dumps(socketio_chat(url, cookie, QUESTION))


def _in_the_app(url: str, user: str) -> set[str]:
    """The libraries whose passages or files appear anywhere in what the app sent."""
    return _words(_app_events(url, user))


def test_the_app_panel_lists_only_readable_libraries_and_sources_name_theirs(
    world: World, app: str
) -> None:
    bob = _app_events(app, "bob")
    assert '"library:shared"' in bob and "\\u00b7 shared" in bob
    assert '"library:team"' not in bob and '"library:vault"' not in bob
    alice = _app_events(app, "alice")
    assert all(f'"library:{name}"' in alice for name in READS["alice"])
    assert '"add_to"' in alice and '"add_to"' not in bob  # alice writes to vault


def test_the_app_answers_each_user_from_their_libraries_and_a_revoke_counts(
    world: World, app: str
) -> None:
    assert _in_the_app(app, "bob") == READS["bob"]
    assert _in_the_app(app, "alice") == READS["alice"]
    access = Access(access_path(world.settings))
    access.revoke("team", "@team", "read")
    try:
        assert _in_the_app(app, "alice") == READS["alice"] - {"team"}
    finally:
        access.grant("team", "@team", "read")
