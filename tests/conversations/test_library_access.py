"""The conversation service reads only what its reader may read, whatever a chat asks
for, and writes to a library only for a writer (#24). The attack matrix across the
entry points is tests/web/test_access_matrix.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from rag.config import Settings
from rag.conversations.conversation import LIBRARY_SWITCH, Conversation, Engine
from rag.conversations.transcript import export_markdown
from rag.ingest.pipeline import Ingestor, discover
from rag.library.access import Access, Reader, access_path
from rag.library.freshness import LiveLibrary
from rag.library.search import open_library


@pytest.fixture
def engine(tmp_path: Path, embedder) -> Engine:
    settings = Settings(index=tmp_path / "index", collection="test")
    access = Access(access_path(settings))
    for name in ("shared", "vault"):
        access.create(name)
    access.grant("shared", "bob", "read")
    access.grant("shared", "alice", "read")
    access.grant("vault", "alice", "write")
    folder = tmp_path / "vault-docs"
    folder.mkdir()
    (folder / "diary.txt").write_text("The code word of the private diary is BIRCH.\n")
    vault = open_library(settings.with_overrides(collection="vault"), embedder)
    Ingestor(vault).run(discover([folder]), progress=False)
    vault.store.close()
    return Engine(settings, LiveLibrary(open_library(settings, embedder)))


def test_a_resumed_chat_cannot_switch_on_a_library_its_reader_may_not_read(engine: Engine):
    chosen = {"top_k": 3, "temperature": 0, LIBRARY_SWITCH + "vault": True}
    thread = {"id": str(uuid.uuid4()), "steps": [], "metadata": {"chat_settings": chosen}}
    bob = Conversation.from_thread(engine, thread, reader=Reader("bob"))
    assert bob.chosen == {"vault"}
    assert bob.libraries() == []  # asked for, but not his to read
    alice = Conversation.from_thread(engine, thread, reader=Reader("alice"))
    assert [lib.settings.collection for lib in alice.libraries()] == ["vault"]


async def test_only_a_writer_adds_files_to_a_library(engine: Engine, tmp_path: Path):
    note = tmp_path / "zephyr.md"
    note.write_text("# Zephyr\n\nThe Zephyr-9 survey drone flies for 47 minutes.\n")
    bob = Conversation(engine, reader=Reader("bob"))
    refused = await bob.add_to_library(note, "zephyr.md", "shared")
    assert "may not add" in refused
    alice = Conversation(engine, reader=Reader("alice"))
    assert "may not add" in await alice.add_to_library(note, "zephyr.md", "shared")
    added = await alice.add_to_library(note, "zephyr.md", "vault")
    assert "Added **zephyr.md** to the library vault" in added
    turn = await alice.prepare("How long does the Zephyr-9 drone fly?")
    assert turn.hits[0].chunk.title == "zephyr.md"
    assert turn.hits[0].chunk.extra["library"] == "vault"
    assert note.exists()  # not consumed unless asked


def test_an_export_withholds_passages_of_libraries_no_longer_readable():
    from rag.conversations.records import Entry

    source = {"n": 1, "label": "diary.txt", "source": "/d/diary.txt", "cited": True}
    entries = [
        Entry("user", "What is the code word?"),
        Entry(
            "assistant", "It is in [1].", False, [{**source, "library": "vault", "text": "BIRCH"}]
        ),
    ]
    thread = {"id": "x"}
    assert "BIRCH" in export_markdown(thread, entries)
    withheld = export_markdown(thread, entries, readable=["shared"])
    assert "BIRCH" not in withheld and "library vault is not readable" in withheld


def test_a_resumed_chat_in_the_app_withholds_passages_of_unreadable_libraries():
    from app_datalayer import withhold_unreadable

    sources = [
        {"n": 1, "label": "diary.txt", "library": "vault"},
        {"n": 2, "label": "handbook.txt", "library": "shared"},
    ]
    thread = {
        "id": "x",
        "steps": [{"id": "s", "metadata": {"sources": sources}}],
        "elements": [
            {"name": "[1] diary.txt · vault", "content": "BIRCH"},
            {"name": "Evidence 1: diary.txt", "content": "the word is **BIRCH**"},
            {"name": "[2] handbook.txt · shared", "content": "MAPLE"},
            {"name": "[1] notes.md", "content": "the chat's own file"},
        ],
    }
    withhold_unreadable(thread, ["shared"])
    texts = [e["content"] for e in thread["elements"]]
    assert not any("BIRCH" in t for t in texts)
    assert texts[2:] == ["MAPLE", "the chat's own file"]
    assert "library vault" in texts[0]
