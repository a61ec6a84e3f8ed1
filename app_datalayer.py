"""Chainlit's data-layer interface over the chat store (rag/conversations/chat_store.py).

This and app.py are the only modules that import Chainlit. Chainlit calls these
methods to store what a chat shows (messages, steps, cited passages) and to
list and reopen past chats in the sidebar; the store does the work, on SQLite or
PostgreSQL. Writes made before a chat's first question wait in Chainlit's queue
(``queue_until_user_message``), so a chat nobody used is never stored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection

from chainlit.context import context
from chainlit.data.base import BaseDataLayer
from chainlit.data.utils import queue_until_user_message
from chainlit.element import Element, ElementDict
from chainlit.step import StepDict
from chainlit.types import (
    Feedback,
    PageInfo,
    PaginatedResponse,
    Pagination,
    ThreadDict,
    ThreadFilter,
)
from chainlit.user import PersistedUser, User

from rag.config import Settings
from rag.conversations.chat_store import ChatStore
from rag.conversations.chat_tables import is_chat_id


class RagDataLayer(BaseDataLayer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: ChatStore | None = None
        self._lock = asyncio.Lock()

    async def store(self) -> ChatStore:
        async with self._lock:
            if self._store is None:
                self._store = await ChatStore.connect(self.settings)
        return self._store

    async def get_user(self, identifier: str) -> PersistedUser | None:
        row = await (await self.store()).user(identifier)
        if row is None:
            return None
        return PersistedUser(
            id=row["id"],
            identifier=row["identifier"],
            metadata=row["metadata"],
            createdAt=row["created_at"],
        )

    async def create_user(self, user: User) -> PersistedUser | None:
        await (await self.store()).ensure_user(user.identifier, user.metadata)
        return await self.get_user(user.identifier)

    async def delete_feedback(self, feedback_id: str) -> bool:
        return await (await self.store()).delete_feedback(feedback_id)

    async def upsert_feedback(self, feedback: Feedback) -> str:
        return await (await self.store()).upsert_feedback(
            feedback.id, feedback.forId, feedback.value, feedback.comment
        )

    @queue_until_user_message()
    async def create_element(self, element: Element) -> None:
        row = dict(element.to_dict())
        if isinstance(getattr(element, "content", None), str):
            row["content"] = element.content  # cited passages, shown again on resume
        await (await self.store()).upsert_element(row)

    async def get_element(self, thread_id: str, element_id: str) -> ElementDict | None:
        found = await (await self.store()).elements(thread_id, element_id)
        return found[0] if found else None  # type: ignore[return-value]

    @queue_until_user_message()
    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        await (await self.store()).delete_element(element_id)

    @queue_until_user_message()
    async def create_step(self, step_dict: StepDict) -> None:
        await (await self.store()).upsert_step(dict(step_dict))

    @queue_until_user_message()
    async def update_step(self, step_dict: StepDict) -> None:
        await (await self.store()).upsert_step(dict(step_dict))

    @queue_until_user_message()
    async def delete_step(self, step_id: str) -> None:
        await (await self.store()).delete_step(step_id)

    async def get_thread_author(self, thread_id: str) -> str:
        row = await (await self.store()).thread_row(thread_id)
        return (row or {}).get("user_identifier") or ""

    async def delete_thread(self, thread_id: str) -> None:
        await (await self.store()).delete_thread(thread_id)  # with its files and their index

    async def list_threads(
        self, pagination: Pagination, filters: ThreadFilter
    ) -> PaginatedResponse[ThreadDict]:
        if not filters.userId:
            return PaginatedResponse(PageInfo(False, None, None), [])  # nobody's, never all
        page, more = await (await self.store()).list_threads(
            filters.userId, search=filters.search, first=pagination.first, cursor=pagination.cursor
        )
        data = [
            ThreadDict(
                id=t["id"],
                createdAt=t["updated_at"],
                name=t["name"],
                userId=t["user_id"],
                userIdentifier=t["user_identifier"],
                tags=t["tags"],
                metadata=t["metadata"],
                steps=[],
                elements=[],
            )
            for t in page
        ]
        ends = (page[0]["id"], page[-1]["id"]) if page else (None, None)
        return PaginatedResponse(PageInfo(more, *ends), data)

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        if not is_chat_id(thread_id):
            # A chat an older version stored under another kind of id cannot be continued
            # (Chainlit says it is not found); `rag chats export` still reads it.
            return None
        return await (await self.store()).thread(thread_id)  # type: ignore[return-value]

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict | None = None,
        tags: list[str] | None = None,
    ) -> None:
        await (await self.store()).upsert_thread(
            thread_id, user_id=user_id, name=name, metadata=metadata, tags=tags
        )

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()

    async def get_favorite_steps(self, user_id: str) -> list[StepDict]:
        return []


async def reattach_passages(thread: ThreadDict, readable: Collection[str] | None = None) -> None:
    """Cited passages of a resumed chat, served from this session's files: the old
    session's copies are gone (Chainlit deletes them when a session ends). A passage of
    a library not in ``readable`` (the reader's now) is withheld: a revoke counts (#24)."""
    session = context.session
    if readable is not None:
        withhold_unreadable(thread, readable)
    for element in thread.get("elements") or []:
        if (text := dict(element).get("content")) is not None:
            ref = await session.persist_file(element["name"], "text/plain", content=str(text))
            element["url"] = f"/project/file/{ref['id']}?session_id={session.id}"


def withhold_unreadable(thread: ThreadDict, readable: Collection[str]) -> None:
    """Replace the text of every side passage (cited or evidence) of a library not in
    ``readable`` by a line saying it is withheld."""
    of_label = _libraries_of_labels(thread)
    for element in thread.get("elements") or []:
        library = _library_of(str(dict(element).get("name") or ""), of_label)
        if library is not None and library not in readable:
            # Chainlit's ElementDict omits it, but a stored element carries its text there.
            element["content"] = f"Withheld: the library {library} is no longer yours to read."  # type: ignore[typeddict-unknown-key]


def _libraries_of_labels(thread: ThreadDict) -> dict[str, str]:
    """Each source label of the chat's answers with the library it came from."""
    found: dict[str, str] = {}
    for step in thread.get("steps") or []:
        for source in (step.get("metadata") or {}).get("sources") or []:
            if isinstance(source, dict) and source.get("library"):
                found[str(source.get("label"))] = str(source["library"])
    return found


def _library_of(name: str, of_label: dict[str, str]) -> str | None:
    """The library of a side passage by its name: "[n] label · library", or an evidence
    passage "Evidence n: label" (its label's library)."""
    if " · " in name:
        return name.rpartition(" · ")[2]
    label = name.split(": ", 1)[1] if name.startswith("Evidence ") and ": " in name else name
    return of_label.get(label)


def new_chat() -> None:
    """Give the session's new chat an id made here. Chainlit starts a new chat under the
    id the client sent when that id resumed nothing (unknown, or another user's chat):
    a look-alike of another chat's id must not name this one."""
    context.session.thread_id = str(uuid.uuid4())
