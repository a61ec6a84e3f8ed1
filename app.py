"""Chainlit handlers for Local RAG Chat: ``chainlit run app.py``.

Only the browser's side lives here; retrieval, prompts and models are in ``rag``.
"""

import asyncio
from dataclasses import dataclass

import chainlit as cl

from rag import chat, store
from rag.chunks import Hit
from rag.config import Settings
from rag.errors import RagError
from rag.models.base import ChatModel
from rag.models.spec import load_chat_model
from rag.retrieval import Library, open_library


@dataclass(frozen=True)
class Resources:
    settings: Settings
    library: Library
    model: ChatModel


_loaded: Resources | None = None
_loading = asyncio.Lock()


def _load() -> Resources:
    settings = Settings()
    return Resources(settings, open_library(settings), load_chat_model(settings.llm, settings))


async def resources() -> Resources:
    """The index and the model, loaded once per process and shared by every chat."""
    global _loaded
    async with _loading:
        if _loaded is None:
            _loaded = await asyncio.to_thread(_load)
    return _loaded


@cl.on_chat_start
async def start() -> None:
    try:
        res = await resources()
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    counts = await asyncio.to_thread(store.source_counts, res.library.collection)
    if counts:
        where = f"your {len(counts)} indexed document{'s' if len(counts) != 1 else ''}"
    else:
        where = "your documents, once you add some with `rag ingest PATH`"
    await cl.Message(
        content=f"Hello! Ask me about {where}. Answers come from **{res.model.name}**, "
        "running on this computer, with the passages they cite."
    ).send()


def _source_elements(turn: chat.Turn) -> tuple[str, list[cl.Text]]:
    """Cited passages in citation order; with no citation, the best retrieved ones."""
    cited = turn.sources()
    shown: list[tuple[int, Hit]] = cited or list(enumerate(turn.hits, start=1))[:3]
    elements = [
        cl.Text(name=f"[{n}] {hit.chunk.label()}", content=hit.chunk.text, display="side")
        for n, hit in shown
    ]
    heading = "Sources" if cited else "Retrieved passages (the answer cites none)"
    return heading, elements


@cl.on_message
async def answer(message: cl.Message) -> None:
    try:
        res = await resources()
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    reply = cl.Message(content="")
    turn = await chat.prepare(message.content, res.library, res.model, res.settings)
    try:
        async for delta in chat.stream_answer(turn, res.model, res.settings):
            await reply.stream_token(delta)
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    except asyncio.CancelledError:
        reply.content += "\n\n*(stopped)*"
        await reply.send()
        raise
    if not turn.hits:
        await reply.send()
        return
    heading, elements = _source_elements(turn)
    reply.elements = elements
    reply.content += f"\n\n**{heading}:** " + ", ".join(e.name for e in elements)
    await reply.send()
