"""One chat request answered: from a library of documents, or by the chat model alone.

``answer_from_library`` is the only place the API asks for a RAG answer, and it asks
the conversation service (rag/conversations/conversation.py), as the app and the CLI do: the same
retrieval, the same privacy rules for passages and history, the same sources.
Both kinds return an ``Answer`` whose text streams; its counts, finish reason and
the ``rag`` extra field are final once the text has ended. The text passes through
``MarkdownStream``, as clients render it: an image in it would be fetched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field

from rag.answers import answering as chat
from rag.config import Settings
from rag.conversations.conversation import Conversation
from rag.conversations.records import LOCAL_USER
from rag.conversations.stored_chats import Conversations
from rag.library.access import OWNER, Reader
from rag.models.base import ChatModel, Message, aclose, estimate_tokens
from rag.models.routing import ModelPool
from rag.sanitize import MarkdownStream, safe_label
from rag.web.openai_api.stops import StopCut


@dataclass
class Answer:
    text: AsyncIterator[str] = field(init=False, repr=False)  # the content, delta by delta
    finish_reason: str = "stop"  # "length" when the answer reached its token limit
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rag: dict | None = None  # sources and evidence, for answers from a library


def _count(model: ChatModel | None, text: str) -> int:
    if not text:
        return 0
    return model.count_tokens(text) if model else estimate_tokens(text)


def _settle(
    answer: Answer, model: ChatModel | None, generated: str, cut: StopCut, max_tokens: int
) -> None:
    """Counts and finish reason, once the text has ended.

    The backends do not say why they stopped, so an answer as long as its limit
    (in the model's own tokens) counts as cut by it."""
    answer.completion_tokens = _count(model, cut.text)
    reached = model is not None and not cut.hit and _count(model, generated) >= max_tokens
    answer.finish_reason = "length" if reached else "stop"


def answer_directly(
    messages: Sequence[Message], pool: ModelPool, settings: Settings, stops: Sequence[str]
) -> Answer:
    """The chat model alone, given the client's messages as they are."""
    answer = Answer()
    cut = StopCut(stops)

    async def text() -> AsyncIterator[str]:
        model = await asyncio.to_thread(pool.load, settings.llm)
        answer.prompt_tokens = sum(_count(model, m["content"]) for m in messages)
        stream = model.stream(
            messages, max_tokens=settings.max_answer_tokens, temperature=settings.temperature
        )
        try:
            async for delta in _safe(cut.apply(stream)):
                yield delta
        finally:
            await aclose(stream)
        # Unless a stop sequence cut it (then the length is not looked at), the text
        # passed on is all the model generated.
        _settle(answer, model, cut.text, cut, settings.max_answer_tokens)

    answer.text = text()
    return answer


async def conversation(
    chats: Conversations,
    messages: Sequence[Message],
    chat_id: str | None,
    options: Settings,
    reader: Reader = OWNER,
    chosen: Collection[str] | None = None,
) -> tuple[Conversation, str]:
    """The conversation a request continues: a stored chat named by ``chat_id`` (made
    when new), or the history the client sent. Either way, an earlier answer made here
    from private documents stays private. It reads as ``reader`` (a key's user), from
    ``chosen`` libraries only."""
    await chats.engine.open_store()
    store = chats.engine.store
    user = reader.user or LOCAL_USER
    asking = {"options": options, "reader": reader, "chosen": chosen}
    if chat_id and store is not None and await store.thread_row(chat_id) is None:
        conv = await chats.create(user, id=chat_id, **asking)
        return conv, str(messages[-1]["content"])
    return await chats.for_request(messages, chat_id, user, **asking)


def answer_from_library(
    messages: Sequence[Message],
    chats: Conversations,
    pool: ModelPool,
    settings: Settings,
    stops: Sequence[str],
    *,
    collection: str,
    chat_id: str | None = None,
    sources_in_text: bool = False,
    reader: Reader = OWNER,
) -> Answer:
    """The last user message answered from the collection of ``chats``; earlier
    exchanges (sent, or stored under ``chat_id``) are its history.

    Private passages and private history reach only models on this machine:
    ``chat`` decides what each model may see, whichever model answers."""
    answer = Answer()
    cut = StopCut(stops)

    async def text() -> AsyncIterator[str]:
        conv, question = await conversation(
            chats, messages, chat_id, settings, reader, chosen={collection}
        )
        turn = await conv.prepare(question)
        stream = conv.stream(turn, pool)
        try:
            async for delta in _safe(cut.apply(stream)):
                yield delta
        finally:
            await aclose(stream)
        # The model that answered counts the tokens; with no answer from a model
        # (nothing relevant found), the primary one counts the notice.
        model = next(
            (m for m in pool.loaded.values() if m.name == turn.model), pool.loaded.get(settings.llm)
        )
        generated = turn.text.removeprefix(chat.GENERAL) if turn.model else ""
        _settle(answer, model, generated, cut, settings.max_answer_tokens)
        answer.prompt_tokens = turn.stats.prompt_tokens if turn.model else 0
        answer.rag = rag_field(turn, collection, chat_id)
        if sources_in_text and (listing := sources_text(turn)):
            yield listing

    answer.text = text()
    return answer


async def _safe(deltas: AsyncIterator[str]) -> AsyncIterator[str]:
    markdown = MarkdownStream()
    async for delta in deltas:
        if safe := markdown.feed(delta):
            yield safe
    if rest := markdown.end():
        yield rest


def rag_field(turn: chat.Turn, collection: str, chat_id: str | None = None) -> dict:
    """What an answer has beyond its text; the shape is documented in the README."""
    cited = {n for n, _ in turn.sources()}
    return {
        "collection": collection,
        "conversation": chat_id,
        "model": turn.model or None,
        "grounded": turn.grounded,
        "sources": [
            {
                "number": n,
                "cited": n in cited,
                "source": h.chunk.source,
                "title": h.chunk.title,
                "label": h.chunk.label(),
                "page": h.chunk.page,
                "heading": h.chunk.heading or None,
                "text": h.chunk.text,
                "similarity": None if h.similarity is None else round(h.similarity, 4),
                "private": bool(h.chunk.extra.get("private")),
                "library": h.chunk.extra.get("library"),
            }
            for n, h in enumerate(turn.context, start=1)
        ],
        "evidence": [e.as_dict() for e in getattr(turn, "evidence", [])],
        "answer": turn.cited_text(),  # the text with citations attributed after generation
        "citations": [c.as_dict() for c in turn.citations],
        "contradicted": [c.as_dict() for c in turn.contradicted],
        "leads_with": "evidence" if turn.lead_with_evidence else "answer",
        "notices": turn.notices(),
    }


def sources_text(turn: chat.Turn) -> str:
    """The sources as plain lines after the answer, for clients that only show text."""
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    if not shown:
        return ""
    lines = [f"- [{n}] {safe_label(h.chunk.label())}" for n, h in shown]
    return "\n\n" + ("Sources:" if cited else "Retrieved (not cited):") + "\n" + "\n".join(lines)
