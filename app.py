"""Chainlit glue for Local RAG Chat (``chainlit run app.py``); the logic lives in rag/."""

import asyncio
import os
from contextlib import aclosing

import chainlit as cl
from chainlit.config import FILES_DIRECTORY, config
from chainlit.input_widget import InputWidget, Select, Slider, Switch, TextInput
from chainlit.server import app as server
from chainlit.server import get_html_template

import app_browser
from app_datalayer import RagDataLayer, new_chat, reattach_passages
from app_login import login_ended, set_up_login
from rag.answers import markdown as answer_markdown
from rag.config import Settings
from rag.conversations import transcript
from rag.conversations.conversation import (
    CHAT_FILES,
    LIBRARY_SWITCH,
    Conversation,
    Engine,
    profiles,
)
from rag.conversations.records import metadata
from rag.conversations.starting import SharedStart
from rag.errors import RagError
from rag.library.access import OWNER, Reader
from rag.models.queue import reporting
from rag.models.spec import label
from rag.sanitize import streamed
from rag.web import limits, security
from rag.web.auth import login_policy

os.umask(0o077)  # chats, uploads, indexes, Chainlit's copies: this account's alone
FILES_DIRECTORY.chmod(0o700)  # Chainlit's, made before this module runs
SETTINGS = Settings()
BIND = config.run.host
LAYER = RagDataLayer(SETTINGS)
PANEL = [
    Slider(id="top_k", label="Passages per answer", initial=SETTINGS.top_k, min=1, max=12),
    Slider(id="temperature", label="Temperature", initial=SETTINGS.temperature, max=1.5, step=0.1),
    Switch(id="use_library", label="Search the library (off: chat files only)", initial=True),
    TextInput(id="sources", label="Only documents matching (globs, comma-separated)"),
]
cl.data_layer(lambda: LAYER)
app_browser.set_up_browser(server, SETTINGS, PANEL)  # before the page's CSP is read (#23)
security.guard(server, SETTINGS, BIND, get_html_template(os.getenv("CHAINLIT_ROOT_PATH", "")))
limits.limit_app_server(server, SETTINGS)  # request size, time and count (#21)

set_up_login(server, SETTINGS, BIND)  # login mode, proxies, a check on every request
NO_LOGIN = login_policy(SETTINGS, BIND).mode == "none"  # everyone is the owner (#24)


async def _start() -> Engine:
    return await Engine.start(SETTINGS, await LAYER.store(), leftovers=FILES_DIRECTORY)


engine = SharedStart(_start)  # once per process, on the first chat; again if it failed


@cl.set_chat_profiles
async def chat_profiles(user=None, language=None):
    specs = profiles(SETTINGS)  # with one model there is nothing to choose
    profile = [cl.ChatProfile(name=label(s), markdown_description=f"`RAG_LLM={s}`") for s in specs]
    return profile if len(specs) > 1 else None


def _reader() -> Reader:
    """Who asks: the logged-in user, or (no login, on loopback) the machine's owner (#24)."""
    user = cl.user_session.get("user")
    return Reader(user.identifier) if user and not NO_LOGIN else OWNER


async def _panel(conv: Conversation) -> list[InputWidget]:
    """The settings, with a switch per library this person may read (all on unless the
    chat chose) and, for a writer, where attached files go."""
    shelf = conv.engine.shelf
    readable = await asyncio.to_thread(shelf.names, conv.reader)
    writable = await asyncio.to_thread(shelf.writable, conv.reader)
    switches: list[InputWidget] = [
        Switch(
            id=LIBRARY_SWITCH + name,
            label=f"Library: {name}",
            initial=conv.chosen is None or name in conv.chosen,
        )
        for name in readable
    ]
    if writable:
        switches.append(
            Select(
                id="add_to",
                label="Add attached files to",
                values=[CHAT_FILES, *writable],
                initial_value=conv.add_to or CHAT_FILES,
            )
        )
    return PANEL + switches


async def _conversation(thread: dict | None = None) -> Conversation:
    res = await engine()
    profile = cl.user_session.get("chat_profile")
    conv = res.conversation(profile, thread, new_id=cl.context.session.thread_id, reader=_reader())
    cl.user_session.set("conversation", conv)
    await cl.ChatSettings(await _panel(conv)).send()
    return conv


@cl.on_chat_start
async def start() -> None:
    new_chat()  # under an id of its own, never one the client sent
    try:
        await cl.Message(content=await (await _conversation()).greeting()).send()
        await app_browser.offer()
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()


@cl.on_chat_resume
async def resume(thread) -> None:
    conv = await _conversation(dict(thread))  # with its history, files and cited passages
    readable = await asyncio.to_thread(conv.engine.shelf.names, conv.reader)
    await reattach_passages(thread, readable)  # none of a library it may no longer read
    await app_browser.offer()


@cl.on_settings_update
async def update_settings(values: dict) -> None:
    cl.user_session.get("conversation").configure(values)
    app_browser.configure(values)


@cl.on_chat_end
async def end() -> None:
    # A disconnect may be a network blip: the chat and its files stay until deleted.
    app_browser.close()
    if conv := cl.user_session.get("conversation"):
        await asyncio.to_thread(conv.close)


@cl.action_callback("export")
async def export(action: cl.Action) -> None:
    if await login_ended():
        return
    text = await cl.user_session.get("conversation").export_markdown()
    chat_md = cl.File(name="chat.md", content=text.encode(), mime="text/markdown")
    await cl.Message(content="This chat as Markdown:", elements=[chat_md]).send()


@cl.on_message
async def answer(message: cl.Message) -> None:
    if await login_ended():
        return
    conv: Conversation = cl.user_session.get("conversation")
    try:
        for f in [e for e in message.elements if e.path]:  # into this chat's own library
            if conv.add_to:  # or into a shared library, for a writer (checked there)
                report = await conv.add_to_library(str(f.path), f.name, conv.add_to, True)
            else:  # Chainlit's copy goes
                report = await conv.attach(str(f.path), f.name, consume=True)
            await cl.Message(content=report, author="Library").send()
        if not message.content.strip():
            return  # files only: they were announced above
        turn = await conv.prepare(message.content)
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    step = cl.Step(name="Retrieval", type="retrieval")
    step.input = turn.search_query
    step.output = transcript.retrieval_report(turn)
    await step.send()
    export_button = cl.Action(name="export", payload={}, label="Export chat as Markdown")
    reply = cl.Message(content="", actions=[export_button])
    turn.progress = lambda n, of: reply.stream_token(answer_markdown.progress(turn, n, of))
    # A question that waits for its model says its place in line (#25).
    queued = reporting(lambda place: reply.stream_token(answer_markdown.waiting(place)))
    try:
        pool = app_browser.pool(conv)  # the user's browser writes it, or the server
        with queued:
            async with aclosing(conv.stream(turn, pool)) as deltas:  # closed at once by Stop
                async for delta in deltas:
                    await reply.stream_token(*streamed(turn.text, delta))  # images made links
    except RagError as exc:
        if not turn.text and reply.content:  # only the place in line was shown
            await reply.remove()
        await cl.ErrorMessage(content=str(exc)).send()
        return
    except asyncio.CancelledError:
        await _finish(reply, turn)  # the partial answer stays, marked as stopped
        raise
    finally:
        step.output = transcript.retrieval_report(turn)  # now with the answer's timings
        await step.update()
    await _finish(reply, turn)


async def _finish(reply: cl.Message, turn) -> None:
    app_browser.credit(turn)
    reply.content, passages = transcript.finished(turn)
    reply.metadata = metadata(turn)  # provenance and sources, for history and export
    reply.elements = [cl.Text(name=n, content=c, display="side") for n, c in passages]  # type: ignore[misc]
    await reply.send()
