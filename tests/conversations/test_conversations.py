"""The conversation service and its store, the same tests on SQLite and PostgreSQL.

PostgreSQL is a real cluster started by the tests (tests/support_db.py); the
models are the real embedding model and the real tiny chat model; the "remote"
model of the privacy tests is a real HTTP server on loopback (tests/servers.py)
that the test declares untrusted.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from contextlib import aclosing
from pathlib import Path

import pytest

from rag.answers import checks as answer_checks
from rag.config import Settings
from rag.conversations.chat_store import ChatStore
from rag.conversations.chat_tables import chat_id, chats_dir, now, t_threads
from rag.conversations.conversation import Conversation, Engine
from rag.conversations.starting import SharedStart
from rag.conversations.stored_chats import Conversations
from rag.conversations.transcript import export_markdown
from rag.errors import RagError
from rag.ingest.pipeline import Ingestor, discover
from rag.library.freshness import LiveLibrary
from rag.library.search import open_library
from rag.web.openai_api import answers

from docbuilders import docx_zip_bomb
from servers import SAMPLE_DATA, Recorder
from support_db import fresh_database, missing, postgres_cluster


@pytest.fixture(scope="session")
def postgres(processes):
    reason = missing()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def chat_settings(request, settings, tmp_path):
    """Settings whose chat history is in a fresh database of the given kind."""
    if request.param == "sqlite":
        return settings.with_overrides(chats_dir=tmp_path / "chats")
    url = await fresh_database(request.getfixturevalue("postgres"))
    return settings.with_overrides(chats_dir=tmp_path / "chats", database_url=url)


@pytest.fixture
async def store(chat_settings):
    found = await ChatStore.connect(chat_settings)
    yield found
    await found.close()


async def test_the_schema_is_made_once_and_recorded(chat_settings):
    first = await ChatStore.connect(chat_settings)
    await first.close()
    again = await ChatStore.connect(chat_settings)  # a second start migrates nothing
    import sqlalchemy as sa

    from rag.conversations.chat_tables import SCHEMA_VERSION, t_meta

    async with again.engine.connect() as db:
        rows = (
            await db.execute(sa.select(t_meta.c.value).where(t_meta.c.key == "schema_version"))
        ).all()
    await again.close()
    assert rows == [(str(SCHEMA_VERSION),)]


async def test_each_user_lists_only_their_chats(store):
    ann_chat, bob_chat = str(uuid.uuid4()), str(uuid.uuid4())
    ann, bob = await store.ensure_user("ann"), await store.ensure_user("bob")
    await store.upsert_thread(
        ann_chat,
        user_id=ann["id"],
        name="Ann's chat",
        tags=["a", "b"],
        metadata={"chat_profile": "x"},
    )
    await store.upsert_thread(bob_chat, user_id=bob["id"], name="Bob's chat")
    page, more = await store.list_threads(ann["id"])
    assert [t["id"] for t in page] == [ann_chat] and not more
    assert page[0]["tags"] == ["a", "b"] and page[0]["metadata"] == {"chat_profile": "x"}
    assert (await store.thread(bob_chat))["userIdentifier"] == "bob"


async def test_messages_keep_their_order_metadata_and_updates(store):
    chat = str(uuid.uuid4())
    user = await store.ensure_user("ann")
    await store.upsert_thread(chat, user_id=user["id"], name="c")
    await store.upsert_step(
        {"id": "s1", "threadId": chat, "type": "user_message", "output": "first?", "metadata": {}}
    )
    await store.upsert_step(
        {
            "id": "s2",
            "threadId": chat,
            "type": "assistant_message",
            "output": "",
            "metadata": {"private": True},
            "streaming": True,
        }
    )
    await store.upsert_step(
        {"id": "s2", "threadId": chat, "type": "assistant_message", "output": "the answer"}
    )  # an update without metadata keeps it
    steps = (await store.thread(chat))["steps"]
    assert [(s["id"], s["output"]) for s in steps] == [("s1", "first?"), ("s2", "the answer")]
    assert steps[1]["metadata"] == {"private": True} and steps[1]["streaming"] is True
    page, _ = await store.list_threads(user["id"], search="THE ANSWER")
    assert [t["id"] for t in page] == [chat]


async def test_deleting_a_chat_deletes_messages_elements_and_files(store):
    chat = str(uuid.uuid4())
    user = await store.ensure_user("ann")
    await store.upsert_thread(chat, user_id=user["id"])
    await store.upsert_step({"id": "s1", "threadId": chat, "type": "user_message", "output": "q"})
    await store.upsert_element(
        {
            "id": "e1",
            "threadId": chat,
            "forId": "s1",
            "type": "text",
            "name": "[1] a.md",
            "content": "passage text",
        }
    )
    files = store.files_dir(chat)
    (files / "files").mkdir(parents=True)
    (files / "files" / "secret.md").write_text("secret")
    assert (await store.elements(chat))[0]["content"] == "passage text"
    await store.delete_thread(chat)
    assert await store.thread(chat) is None
    assert await store.elements(chat) == [] and await store.steps(chat) == []
    assert not files.exists()


async def test_retention_removes_old_chats_only(store):
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    user = await store.ensure_user("ann")
    await store.upsert_thread(old, user_id=user["id"])
    await store.upsert_thread(new, user_id=user["id"])
    import sqlalchemy as sa

    async with store.engine.begin() as db:
        await db.execute(
            sa.update(t_threads)
            .where(t_threads.c.id == old)
            .values(updated_at="2020-01-01T00:00:00.000Z")
        )
    assert await store.expire(30) == [old]
    assert await store.thread(new) is not None


async def test_the_engine_starts_once_for_all_and_again_after_a_failure():
    starts: list[int] = []
    release = asyncio.Event()

    async def start():
        starts.append(1)
        await release.wait()
        if len(starts) == 1:
            raise RagError("the model server is not up yet")
        return "engine"

    shared = SharedStart(start)
    first = asyncio.ensure_future(shared())
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(RagError):
        await first
    release.clear()
    leaving = asyncio.ensure_future(shared())  # a chat that closes while the engine starts
    staying = asyncio.ensure_future(shared())
    await asyncio.sleep(0)
    leaving.cancel()
    release.set()
    assert await staying == "engine"
    assert await shared() == "engine"
    assert len(starts) == 2


# The conversation service, with the real models ------------------------------------


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory, embedder) -> Path:
    """data/ ingested once for the module; each test gets a copy of its own to change."""
    index = tmp_path_factory.mktemp("sample") / "index"
    library = open_library(Settings(index=index, collection="test"), embedder)
    Ingestor(library).run(discover([SAMPLE_DATA]), progress=False)
    library.store.close()
    return index


@pytest.fixture
def engine(sample_index, chat_settings, embedder, embedded_model):
    shutil.copytree(sample_index, chat_settings.index)
    library = open_library(chat_settings, embedder)
    options = chat_settings.with_overrides(temperature=0.0)
    found = Engine(options, LiveLibrary(library))
    found.models["embedded"] = embedded_model  # loaded once for the whole session
    return found


async def test_a_stored_chat_resumes_with_its_history_and_files(engine, tmp_path):
    chats = Conversations(engine)
    conv = await chats.create()
    first = await conv.ask("How do I install Local RAG Chat on Linux?")
    assert first.grounded and first.text
    notes = tmp_path / "zephyr.md"
    notes.write_text("# Zephyr\n\nThe Zephyr-9 survey drone flies for 47 minutes on one battery.")
    assert "1 passage" in await conv.attach(notes, "zephyr.md")
    conv.close()

    again = await chats.open(conv.id)
    assert again.history[0].content == "How do I install Local RAG Chat on Linux?"
    assert await again.files() == ["zephyr.md"]
    follow = await again.prepare("And on Windows?")  # needs the first question
    assert follow.search_query.startswith("How do I install Local RAG Chat on Linux?")
    turn = await again.ask("How long does the Zephyr-9 drone fly on one battery?")
    assert turn.hits[0].chunk.title == "zephyr.md"
    assert len((await chats.thread(conv.id))["steps"]) == 4
    again.close()

    with pytest.raises(RagError, match="no chat"):
        await chats.open(conv.id, user="mallory")  # another user's chat is not there
    folder = again.files_dir
    await chats.delete(conv.id)
    assert not folder.exists()
    with pytest.raises(RagError):
        await chats.open(conv.id)


async def test_a_hostile_upload_fails_alone_and_the_chat_goes_on(engine, tmp_path):
    # As the app attaches a message's files: one after the other, in this process.
    conv = await Conversations(engine).create()
    bomb = docx_zip_bomb(tmp_path / "upload-1")
    notes = tmp_path / "upload-2"
    notes.write_text("# Zephyr\n\nThe Zephyr-9 survey drone flies for 47 minutes on one battery.")
    reports = [await conv.attach(bomb, "report.docx"), await conv.attach(notes, "zephyr.md")]
    assert reports[0].startswith("**report.docx** could not be read: too large to read safely")
    assert "1 passage" in reports[1]
    assert await conv.files() == ["zephyr.md"]
    turn = await conv.ask("How long does the Zephyr-9 drone fly on one battery?")
    assert turn.hits[0].chunk.title == "zephyr.md"
    conv.close()


async def test_export_lists_questions_answers_and_sources(engine):
    chats = Conversations(engine)
    conv = await chats.create()
    turn = await conv.ask("What is the daily meal allowance?")
    text = await chats.export(conv.id)
    assert text.startswith("# What is the daily meal allowance?")
    assert "## What is the daily meal allowance?" in text
    assert turn.text.strip() in text
    label = turn.shown_sources(uncited=len(turn.context))[1][0][1].chunk.label()
    assert f"] {label} (`" in text
    assert export_markdown(await chats.thread(conv.id)) == text


async def test_an_off_topic_question_stays_ungrounded_in_every_model(engine):
    conv = Conversation(engine)
    turn = await conv.prepare("Who won the 1998 football World Cup?")
    trial = conv.retry(turn)
    async for _ in conv.stream(trial, remember=False):
        pass
    assert not trial.grounded and trial.text.startswith("I could not find this")
    assert trial.context == []


async def test_an_answer_stopped_between_words_is_marked_and_not_remembered(engine):
    conv = Conversation(engine)
    turn = await conv.prepare("What is the daily meal allowance?")
    async with aclosing(conv.stream(turn)) as deltas:  # as the app reads it
        async for _ in deltas:
            break  # the reader pressed Stop while the first words were shown
    assert turn.stopped and turn.text
    assert conv.history == []


async def test_an_answer_stopped_while_it_is_checked_is_marked_stopped(engine, monkeypatch):
    checking = asyncio.Event()
    real_check = answer_checks.check

    async def observed(turn, settings):  # the real check, with a signal that it began
        checking.set()
        await real_check(turn, settings)

    monkeypatch.setattr(answer_checks, "check", observed)
    conv = Conversation(engine)
    turn = await conv.prepare("What is the daily meal allowance?")

    async def read() -> None:
        async for _ in conv.stream(turn):
            pass

    task = asyncio.create_task(read())
    await asyncio.wait_for(checking.wait(), timeout=120)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turn.stopped and turn.text
    assert conv.history == []


# Privacy follows the data ----------------------------------------------------------

SECRET = "HEDGEHOG-4471"


@pytest.fixture
def private_engine(engine, tmp_path):
    private = tmp_path / "private"
    private.mkdir()
    (private / "diary.md").write_text(
        f"# Diary\n\nMy secret garden gate code is {SECRET}. The gate is painted green."
    )
    Ingestor(engine.live.library, extra_metadata={"private": True}).run(
        discover([private]), progress=False
    )
    return engine


def routed_to(engine, remote: Recorder) -> Engine:
    """Code questions go to the recording server, which counts as off this machine."""
    options = engine.settings.with_overrides(
        llm_routes={"code": f"openai:remote@{remote.base}"}, llm_local_hosts=["localhost"]
    )
    found = Engine(options, engine.live, engine.store)
    found.models = engine.models
    return found


async def test_private_history_never_reaches_a_remote_model(private_engine, processes):
    remote = Recorder()
    try:
        engine = routed_to(private_engine, remote)
        conv = await Conversations(engine).create()
        first = await conv.ask("What is my secret garden gate code?")
        assert first.model.startswith("SmolLM2-135M-Instruct") and first.private
        assert any(h.chunk.extra.get("private") for h in first.context)
        second = await conv.ask("Write a python function def gate(): return the code()")
    finally:
        remote.shutdown()
    sent = str(remote.bodies)
    assert remote.bodies, "the second question should have gone to the remote model"
    assert SECRET not in sent and "secret garden gate" not in sent
    assert first.text.strip()[:30] not in sent
    assert second.withheld_turns == 1
    assert any("earlier exchange" in n for n in second.notices())


async def test_sent_back_private_answers_stay_private_in_the_api(private_engine, processes):
    conv = Conversation(private_engine)
    await private_engine.open_store()
    first = await conv.ask("What is my secret garden gate code?")
    assert first.private
    remote = Recorder()
    try:
        engine = routed_to(private_engine, remote)
        sent_back = [
            {"role": "user", "content": "What is my secret garden gate code?"},
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": "Write a python function def gate(): code()"},
        ]
        api, question = await Conversation.from_messages(engine, sent_back)
        assert [e.private for e in api.history] == [True, True]
        turn = await api.ask(question)
    finally:
        remote.shutdown()
    assert remote.bodies and SECRET not in str(remote.bodies)
    assert "What is my secret garden gate code?" not in str(remote.bodies)
    assert turn.withheld_turns == 1


async def test_general_answers_do_not_carry_private_history(private_engine, processes):
    remote = Recorder()
    try:
        options = private_engine.settings.with_overrides(
            llm=f"openai:remote@{remote.base}",
            llm_fallback=[],
            llm_local_hosts=["localhost"],
            off_topic="general",
        )
        engine = Engine(options, private_engine.live, private_engine.store)
        history = [
            {"role": "user", "content": "What is my gate code?", "private": True},
            {"role": "assistant", "content": f"It is {SECRET} [1].", "private": True},
        ]
        from rag.conversations.records import Entry

        conv = Conversation(engine, history=[Entry(**m) for m in history])
        turn = await conv.ask("Who won the 1998 football World Cup?")
    finally:
        remote.shutdown()
    assert not turn.grounded and remote.bodies
    assert SECRET not in str(remote.bodies)


def test_history_comes_back_from_the_app_s_stored_messages():
    """Chainlit stores answers as steps under the question; notes have no answer."""
    from rag.conversations.records import entries_from_steps

    steps = [
        {"id": "w", "type": "assistant_message", "output": "Hello!", "metadata": {}},
        {"id": "q", "type": "user_message", "output": "What is my code?", "metadata": {}},
        {"id": "r", "type": "retrieval", "output": "Searched for: ..."},
        {
            "id": "a",
            "type": "assistant_message",
            "parentId": "q",
            "output": "It is X [1].\n\n**Sources:** [1] diary.md",
            "metadata": {"answer": "It is X [1].", "private": True},
        },
        {"id": "q2", "type": "user_message", "output": "Tell a long story", "metadata": {}},
        {
            "id": "a2",
            "type": "assistant_message",
            "output": "Once",
            "metadata": {"answer": "Once", "stopped": True},
        },
    ]
    entries = entries_from_steps(steps)
    assert [(e.role, e.content, e.private) for e in entries] == [
        ("user", "What is my code?", True),
        ("assistant", "It is X [1].", True),
    ]


async def test_an_api_request_continues_a_stored_chat_or_its_own_messages(engine):
    chats = Conversations(engine)
    stored = await chats.create()
    await stored.ask("How do I install Local RAG Chat on Linux?")
    conv, question = await chats.for_request(
        [{"role": "user", "content": [{"type": "text", "text": "And on Windows?"}]}],
        chat_id=stored.id,
    )
    assert question == "And on Windows?" and len(conv.history) == 2
    turn = await conv.ask(question)
    assert turn.search_query.startswith("How do I install Local RAG Chat on Linux?")
    assert len((await chats.thread(stored.id))["steps"]) == 4

    sent = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I install Local RAG Chat on Linux?"},
        {"role": "assistant", "content": "Run make run."},
        {"role": "user", "content": "And on Windows?"},
    ]
    conv, question = await chats.for_request(sent)
    assert [e.content for e in conv.history] == [sent[1]["content"], sent[2]["content"]]
    with pytest.raises(RagError):
        await chats.for_request(sent[:3])
    with pytest.raises(RagError, match="no chat"):
        await chats.for_request(sent, chat_id=stored.id, user="mallory")


def test_a_resumed_chat_keeps_its_settings(engine):
    thread = {
        "id": str(uuid.uuid4()),
        "steps": [],
        "metadata": {
            "chat_settings": {
                "top_k": 2,
                "temperature": 0.5,
                "use_library": False,
                "sources": "*.md",
            }
        },
    }
    conv = Conversation.from_thread(engine, thread)
    assert (
        conv.options.top_k,
        conv.options.temperature,
        conv.use_library,
        conv.options.sources,
    ) == (2, 0.5, False, ["*.md"])


async def test_leftovers_of_a_crashed_run_are_swept(store, tmp_path):
    """Files of chats that no longer exist, and Chainlit's copies from before the start."""
    import os
    import time

    from rag.conversations.chat_tables import sweep_older

    alive, orphan, fresh_orphan = (str(uuid.uuid4()) for _ in range(3))
    user = await store.ensure_user("ann")
    await store.upsert_thread(alive, user_id=user["id"])
    day_old = time.time() - 2 * 24 * 3600
    folders = [store.files_dir(c) for c in (alive, orphan, fresh_orphan)]
    folders.append(store.folder / "files" / "api-chat-1")  # a chat's before ids were UUIDs
    for folder in folders:
        (folder / "files").mkdir(parents=True)
    for folder in (folders[0], folders[1], folders[3]):
        os.utime(folder, (day_old, day_old))
    assert sorted(await store.sweep_files()) == sorted([orphan, "api-chat-1"])
    assert folders[0].exists() and folders[2].exists()

    copies = tmp_path / ".files"
    (copies / "old-session").mkdir(parents=True)
    (copies / "old-session" / "upload.pdf").write_bytes(b"%PDF")
    os.utime(copies / "old-session", (day_old, day_old))
    (copies / "live-session").mkdir()
    sweep_older(copies, before=time.time() - 60)
    assert [p.name for p in copies.iterdir()] == ["live-session"]


# A chat's id names its files: a look-alike id reaches nothing of another chat ------

PIN = "PIN 8356-QX"


def twins(chat_id: str) -> list[str]:
    """Other spellings of ``chat_id``: those the old folder naming (every character but
    letters, digits, ``-`` and ``_`` dropped) mapped onto its folder, and the rest."""
    return [
        f"{chat_id}.",
        f"{chat_id}!",
        f" {chat_id}",
        f"{chat_id}\n",
        f"{chat_id}/",
        chat_id.upper(),  # the same folder where file names ignore case
        chat_id.replace("-", ""),
        "{" + chat_id + "}",
    ]


async def alice_with_pins(chats: Conversations, tmp_path) -> Conversation:
    """Alice's stored chat with a file only she may read."""
    alice = await chats.create(user="alice")
    pins = tmp_path / "pins.md"
    pins.write_text(f"# Locker\n\nAlice's locker code is {PIN}; her badge number is B-7731.")
    await alice.save_thread(name="Alice's notes")
    assert "1 passage" in await alice.attach(pins, "pins.md")
    alice.close()
    return alice


async def seen_by(make, question: str) -> str:
    """Everything a chat made by ``make`` finds for ``question``: its files and the
    passages retrieved. A chat refused sees nothing."""
    try:
        conv, question = await make()
    except RagError:
        return ""
    try:
        turn = await conv.prepare(question)
        return " ".join([*await conv.files(), *(h.chunk.source + h.chunk.text for h in turn.hits)])
    finally:
        conv.close()


async def test_a_look_alike_chat_id_sees_nothing_of_another_users_chat(engine, tmp_path):
    """Bob names his new chat after alice's (the app lets a client choose a new chat's
    id, and ``rag serve`` makes a chat for an unknown ``X-Conversation-Id``)."""
    chats = Conversations(engine)
    alice = await alice_with_pins(chats, tmp_path)
    question = "What is Alice's locker code?"
    # Alice's exact id never reaches the app's door: Chainlit refuses a connection that
    # names another user's chat, and the app gives each new chat an id of its own
    # (tests/web/test_security.py, the look-alike chat id in the app).
    for twin in [*twins(alice.id), alice.id]:

        async def in_the_app(twin=twin):  # a new chat under the id the client sent
            return engine.conversation(None, None, new_id=twin), question

        async def in_the_api(twin=twin):  # what `rag serve` does with the header
            sent = [{"role": "user", "content": question}]
            return await answers.conversation(chats, sent, twin, engine.settings)

        for door in (in_the_app, in_the_api) if twin != alice.id else (in_the_api,):
            seen = await seen_by(door, question)
            assert PIN not in seen and "pins.md" not in seen, (door.__name__, twin)
    with pytest.raises(RagError, match="UUID"):
        engine.conversation(None, None, new_id=f"{alice.id}.")
    with pytest.raises(RagError):  # alice's own id is no new chat for anyone
        await chats.create(user="bob", id=alice.id)

    # A look-alike chat stored before ids were checked (bob's, as the old code let him
    # make it): deleting it deletes its own rows, never alice's files.
    store = await engine.open_store()
    bob = await store.ensure_user("bob")
    twin = f"{alice.id}."
    async with store.engine.begin() as db:
        await db.execute(
            t_threads.insert().values(
                id=twin,
                user_id=bob["id"],
                user_identifier="bob",
                name="Bob's twin",
                metadata="{}",
                tags="[]",
                created_at=now(),
                updated_at=now(),
            )
        )
    await chats.delete(twin, user="bob")
    assert await store.thread_row(twin) is None
    again = await chats.open(alice.id, user="alice")
    assert await again.files() == ["pins.md"]
    turn = await again.prepare(question)
    assert any(PIN in h.chunk.text for h in turn.hits)
    again.close()


def test_a_chat_id_is_exactly_a_uuid():
    good = str(uuid.uuid4())
    assert chat_id(good) == good
    for bad in [*twins(good), "", "chat", f"../{good}", good[:-1], f"urn:uuid:{good}", None, 7]:
        with pytest.raises(RagError, match="UUID"):
            chat_id(bad)


async def test_files_and_owner_follow_the_exact_chat_id(store):
    ann, bob = await store.ensure_user("ann"), await store.ensure_user("bob")
    chat = str(uuid.uuid4())
    await store.upsert_thread(chat, user_id=ann["id"])
    assert store.files_dir(chat) == store.folder / "files" / chat  # the id as it is
    for twin in twins(chat):
        with pytest.raises(RagError):
            store.files_dir(twin)
        with pytest.raises(RagError):  # no chat is stored under a look-alike
            await store.upsert_thread(twin, user_id=bob["id"])
        with pytest.raises(RagError):
            await store.upsert_step({"id": "s1", "threadId": twin, "type": "user_message"})
    with pytest.raises(RagError, match="another user"):
        await store.upsert_thread(chat, user_id=bob["id"])
    await store.upsert_thread(chat, user_id=ann["id"], name="Renamed")  # its owner may
    row = await store.thread_row(chat)
    assert (row["user_identifier"], row["name"]) == ("ann", "Renamed")


async def test_the_chats_folder_is_made_private_where_it_was_not(chat_settings):
    import stat

    folder = chats_dir(chat_settings)
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)  # as an older version left it
    store = await ChatStore.connect(chat_settings)
    await store.close()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
