"""Chainlit handlers for Local RAG Chat: ``chainlit run app.py``.

Only Chainlit glue: conversations come from rag/conversation.py, chat history from
app_datalayer.py, who may reach the app from rag/security.py and rag/auth.py.
"""

import asyncio
import os
import sys
import time

import chainlit as cl
from chainlit.config import FILES_DIRECTORY, config
from chainlit.input_widget import Slider, Switch, TextInput
from chainlit.server import app as server
from chainlit.server import get_html_template
from chainlit.types import ThreadDict

from app_datalayer import RagDataLayer, reattach_passages
from rag import answer_markdown, auth, chats, security, transcript
from rag.chat import Turn
from rag.config import Settings
from rag.conversation import Conversation, Engine, metadata, profiles
from rag.errors import RagError
from rag.models.spec import label
from rag.sanitize import safe_label, safe_markdown

SETTINGS = Settings()
BIND = config.run.host
LAYER = RagDataLayer(SETTINGS)
STARTED = time.time()
_engine: Engine | None = None
_loading = asyncio.Lock()
cl.data_layer(lambda: LAYER)
security.guard(server, SETTINGS, BIND, get_html_template(os.getenv("CHAINLIT_ROOT_PATH", "")))

# History needs a login: on loopback everyone is the one local user, logged in by header.
POLICY = auth.login_policy(SETTINGS, BIND)
os.environ.setdefault("CHAINLIT_AUTH_SECRET", auth.auth_secret(SETTINGS.cache_dir))
if POLICY.mode == "password":
    try:
        USERS = auth.password_users(SETTINGS, BIND)
    except RagError as exc:
        sys.exit(str(exc))

    @cl.password_auth_callback
    async def login(name: str, password: str) -> cl.User | None:
        ok = await asyncio.to_thread(USERS.verify, name, password)
        return cl.User(identifier=name) if ok else None
else:
    @cl.header_auth_callback
    async def login_by_header(headers) -> cl.User | None:
        name = auth.request_user(POLICY, headers)
        return cl.User(identifier=name) if name else None


async def engine() -> Engine:
    """Loaded once per process, on the first chat."""
    global _engine
    async with _loading:
        if _engine is None:
            _engine = await Engine.start(SETTINGS, await LAYER.store())
            chats.sweep_older(FILES_DIRECTORY, STARTED)  # Chainlit's copies a crash left
    return _engine


@cl.set_chat_profiles
async def chat_profiles(user=None, language=None):
    specs = profiles(SETTINGS)  # with one model there is nothing to choose
    return [cl.ChatProfile(name=label(s), markdown_description=f"`RAG_LLM={s}`")
            for s in specs] if len(specs) > 1 else None


async def _conversation(thread: dict | None = None) -> Conversation:
    res = await engine()
    name = cl.user_session.get("chat_profile")
    spec = next((s for s in res.profiles() if label(s) == name), SETTINGS.llm)
    conv = (Conversation.from_thread(res, thread, spec=spec) if thread is not None
            else Conversation(res, id=cl.context.session.thread_id, spec=spec))
    cl.user_session.set("conversation", conv)
    await cl.ChatSettings([
        Slider(id="top_k", label="Passages per answer", initial=SETTINGS.top_k, min=1, max=12),
        Slider(id="temperature", label="Temperature", initial=SETTINGS.temperature, max=1.5,
               step=0.1),
        Switch(id="use_library", label="Search the library (off: only this chat's files)",
               initial=True),
        TextInput(id="sources", label="Only documents matching (globs, comma-separated)"),
    ]).send()
    return conv


@cl.on_chat_start
async def start() -> None:
    try:
        await cl.Message(content=await (await _conversation()).greeting()).send()
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()


@cl.on_chat_resume
async def resume(thread: ThreadDict) -> None:
    """A past chat, with its history, files and cited passages."""
    await _conversation(dict(thread))
    await reattach_passages(thread)


@cl.on_settings_update
async def update_settings(values: dict) -> None:
    cl.user_session.get("conversation").configure(values)


@cl.on_chat_end
async def end() -> None:
    # A disconnect may be a network blip: the chat and its files stay until deleted.
    if conv := cl.user_session.get("conversation"):
        await asyncio.to_thread(conv.close)


@cl.action_callback("export")
async def export(action: cl.Action) -> None:
    thread = await (await LAYER.store()).thread(cl.user_session.get("conversation").id)
    text = transcript.export_markdown(thread) if thread else "Nothing stored yet."
    await cl.Message(content="This chat as Markdown:", elements=[
        cl.File(name="chat.md", content=text.encode(), mime="text/markdown")]).send()


@cl.on_message
async def answer(message: cl.Message) -> None:
    conv: Conversation = cl.user_session.get("conversation")
    try:
        for f in [e for e in message.elements if e.path]:  # into this chat's own library
            report = await conv.attach(str(f.path), f.name, consume=True)  # Chainlit's copy goes
            await cl.Message(content=report, author="Library").send()
        if not message.content.strip():
            return  # files only: they were announced above
        turn = await conv.prepare(message.content)
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    step = cl.Step(name="Retrieval", type="retrieval")
    step.input, step.output = turn.search_query, transcript.retrieval_report(turn)
    await step.send()
    reply = cl.Message(content="", actions=[
        cl.Action(name="export", payload={}, label="Export chat as Markdown")])
    turn.progress = lambda done, total: reply.stream_token(  # a whole-document summary
        answer_markdown.progress(turn, done, total))
    try:
        async for delta in conv.stream(turn):
            # A remote image would be fetched as it streams: resend the text made safe.
            safe = "![" in turn.text
            await reply.stream_token(safe_markdown(turn.text) if safe else delta, is_sequence=safe)
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    except asyncio.CancelledError:
        await _finish(reply, turn)  # the partial answer stays, marked as stopped
        raise
    finally:
        step.output = transcript.retrieval_report(turn)  # now with the answer's timings
        await step.update()
    await _finish(reply, turn)


async def _finish(reply: cl.Message, turn: Turn) -> None:
    """The answer as checked (a loop cut, unsupported sentences marked, evidence quoted),
    its sources, and the passages they open, the evidence sentence highlighted."""
    sources, shown = transcript.sources_line(turn)
    reply.content = safe_markdown(answer_markdown.finished(turn)) + sources
    reply.metadata = metadata(turn)  # provenance and sources, for history and export
    reply.elements = [cl.Text(name=f"[{n}] {safe_label(h.chunk.label())}",
                              content=safe_markdown(h.chunk.text), display="side")
                      for n, h in shown] + [
        cl.Text(name=safe_label(answer_markdown.evidence_name(n, e)), display="side",
                content=safe_markdown(answer_markdown.highlighted_passage(e, turn.hits)))
        for n, e in enumerate(turn.evidence, start=1)]
    await reply.send()
