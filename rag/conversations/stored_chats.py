"""A user's stored chats, through one engine: create, open, list, delete and export them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from rag.conversations import transcript
from rag.conversations.chat_store import ChatStore
from rag.conversations.conversation import Conversation, Engine
from rag.conversations.records import LOCAL_USER, text_of
from rag.errors import RagError


class Conversations:
    """Stored conversations of one engine, per user (``ConversationStore``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _store(self) -> ChatStore:
        return await self.engine.open_store()

    async def user_id(self, identifier: str = LOCAL_USER) -> str:
        return (await (await self._store()).ensure_user(identifier))["id"]

    async def create(self, user: str = LOCAL_USER, **kwargs: Any) -> Conversation:
        """A new stored chat; under the id given (``rag serve``'s header) only when
        nothing is stored under it yet: no chat, no files."""
        conv = Conversation(self.engine, user_id=await self.user_id(user), persist=True, **kwargs)
        store = await self._store()
        if kwargs.get("id") is not None and (
            await store.thread_row(conv.id) is not None or store.files_dir(conv.id).exists()
        ):
            raise RagError(f"The chat id {conv.id!r} is taken; choose a new UUID.")
        return conv

    async def thread(self, chat_id: str, user: str | None = LOCAL_USER) -> dict:
        """The stored chat; ``user=None`` (the machine's own CLI) may read any."""
        thread = await (await self._store()).thread(chat_id)
        if thread is None or (user is not None and thread.get("userIdentifier") != user):
            raise RagError(f"There is no chat {chat_id!r}; `rag chats list` shows them.")
        return thread

    async def open(
        self, chat_id: str, user: str | None = LOCAL_USER, **kwargs: Any
    ) -> Conversation:
        """A stored conversation, with its history and files, to continue."""
        thread = await self.thread(chat_id, user)
        return Conversation.from_thread(self.engine, thread, persist=True, **kwargs)

    async def for_request(
        self,
        messages: Sequence[dict],
        chat_id: str | None = None,
        user: str = LOCAL_USER,
        **kwargs: Any,
    ) -> tuple[Conversation, str]:
        """What ``rag serve`` needs for one request: with ``chat_id``, the stored chat
        (its history and files; the answer is stored in it) and the last user
        message; without, a conversation made of the messages sent."""
        if chat_id is None:
            return await Conversation.from_messages(self.engine, messages, **kwargs)
        conv = await self.open(chat_id, user, **kwargs)
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            raise RagError("The last message must come from the user.")
        return conv, text_of(users[-1].get("content"))

    async def list(self, user: str | None = LOCAL_USER, first: int = 100) -> list[dict]:
        store = await self._store()
        user_id = None if user is None else (await store.ensure_user(user))["id"]
        page, _ = await store.list_threads(user_id, first=first)
        return page

    async def delete(self, chat_id: str, user: str | None = LOCAL_USER) -> None:
        await self.thread(chat_id, user)
        await (await self._store()).delete_thread(chat_id)

    async def export(
        self, chat_id: str, user: str | None = LOCAL_USER, readable: Collection[str] | None = None
    ) -> str:
        """The chat as Markdown, without passages of libraries not in ``readable``."""
        return transcript.export_markdown(await self.thread(chat_id, user), readable=readable)
