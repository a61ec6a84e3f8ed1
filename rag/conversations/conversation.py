"""One conversation: its history, attached files, options and model; answers with sources.

The browser app, ``rag ask``/``rag compare``/``rag chat`` and ``rag serve`` are
adapters over this module; rag/answers/answering.py does the work of one turn.

Privacy follows the data: every message remembers whether it was made from
private text (an answer from private passages, and the question that led to it).
rag/answers/answering.py keeps such messages, like private passages, away from models off
this machine, and the store remembers digests of private answers so that an API
client sending one back as history gets it treated as private again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from rag.answers import answering as chat
from rag.answers.turn import Turn
from rag.config import Settings
from rag.conversations import transcript, uploads
from rag.conversations.chat_store import ChatStore
from rag.conversations.chat_tables import chat_id, sweep_older
from rag.conversations.records import (
    Entry,
    entries_from_steps,
    link_private,
    metadata,
    sources,
    text_of,
)
from rag.errors import RagError
from rag.library.access import OWNER, Reader
from rag.library.freshness import LiveLibrary
from rag.library.live import Library, open_library
from rag.library.shelf import Shelf
from rag.models.base import ChatModel
from rag.models.routing import ModelPool
from rag.models.spec import label

LIBRARY_SWITCH = "library:"  # the app's settings panel: one switch per readable library
CHAT_FILES = "this chat only"  # the panel's choice of where attached files go
NO_LIBRARY = (
    "The library is switched off and this chat has no files: attach a file or "
    "switch the library on in the settings."
)


def profiles(settings: Settings) -> list[str]:
    """The specs a person can choose between: the primary model, then the fallbacks."""
    return list(dict.fromkeys([settings.llm, *settings.llm_fallback]))


class Engine:
    """What every conversation of a process shares: settings, the library, loaded
    models (one per spec, shared by every profile's pool) and the chat store."""

    def __init__(
        self,
        settings: Settings,
        live: LiveLibrary | None,
        store: ChatStore | None = None,
        opened: Mapping[str, Library] | None = None,
    ) -> None:
        self.settings = settings
        self.live = live
        self.store = store
        self.models: dict[str, ChatModel] = {}
        self.pools: dict[str, ModelPool] = {}
        self._opening = asyncio.Lock()
        self._opened = dict(opened or {})
        self._shelf: Shelf | None = None

    @classmethod
    def open(cls, settings: Settings, library: Library | None = None) -> Engine:
        """Blocking: loads the embedding model and opens the index."""
        return cls(settings, LiveLibrary(library or open_library(settings)))

    @property
    def shelf(self) -> Shelf:
        """Every library of the index, handed out by who may read it (#24)."""
        if self._shelf is None:
            opened = self._opened or {self.settings.collection: self.shared.library}
            self._shelf = Shelf(self.settings, opened)
        return self._shelf

    @classmethod
    async def start(
        cls, settings: Settings, store: ChatStore, leftovers: Path | None = None
    ) -> Engine:
        """The app's engine: library and primary model loaded off the event loop (the
        first question should not wait), the chat store connected, retention applied,
        and what a crashed run left in ``leftovers`` (the app's upload copies) swept."""
        started = time.time()

        def load() -> Engine:
            found = cls.open(settings)
            with contextlib.suppress(RagError):  # said in the welcome; a fallback may answer
                found.pool().load(settings.llm)
            return found

        found = await asyncio.to_thread(load)
        found.store = store
        await found.open_store()
        if leftovers is not None:
            await asyncio.to_thread(sweep_older, leftovers, started)
        return found

    async def open_store(self) -> ChatStore:
        """Connect to the chat history; old chats (retention) and orphaned files go.
        Requests that come at once (``rag serve``'s first ones) connect once."""
        async with self._opening:
            if self.store is None:
                store = await ChatStore.connect(self.settings)
                await store.expire(self.settings.chat_retention_days)
                await store.sweep_files()
                self.store = store
        return self.store

    @property
    def shared(self) -> LiveLibrary:
        """The shared library (only `rag chats` commands run without one)."""
        if self.live is None:
            raise RagError("No library was opened for this command.")
        return self.live

    def profiles(self) -> list[str]:
        return profiles(self.settings)

    def conversation(
        self, profile: str | None, thread: dict | None, new_id: str, reader: Reader = OWNER
    ) -> Conversation:
        """A stored chat to resume, or a new one; its model is the chosen profile's, and
        it reads what ``reader`` may read."""
        spec = next((s for s in self.profiles() if label(s) == profile), self.settings.llm)
        if thread is not None:
            return Conversation.from_thread(self, thread, spec=spec, reader=reader)
        return Conversation(self, id=new_id, spec=spec, reader=reader)

    def pool(self, spec: str | None = None) -> ModelPool:
        """The chosen model first, then the configured fallbacks."""
        spec = spec or self.settings.llm
        if spec not in self.pools:
            rest = [s for s in self.settings.llm_fallback if s != spec]
            chosen = self.settings.with_overrides(llm=spec, llm_fallback=rest)
            self.pools[spec] = ModelPool(chosen, loaded=self.models)
        return self.pools[spec]


class Conversation:
    """A conversation's state and the one way to get its next answer."""

    def __init__(
        self,
        engine: Engine,
        *,
        id: str | None = None,
        user_id: str | None = None,
        options: Settings | None = None,
        spec: str | None = None,
        use_library: bool = True,
        history: Sequence[Entry] = (),
        persist: bool = False,
        reader: Reader = OWNER,
        chosen: Collection[str] | None = None,
    ) -> None:
        self.engine = engine
        # Who asks, and which of the libraries they may read they chose (None: all).
        self.reader, self.chosen = reader, None if chosen is None else set(chosen)
        self.add_to: str | None = None  # a library the chat's files go to (None: the chat)
        self.id = chat_id(id) if id is not None else str(uuid.uuid4())
        self.user_id = user_id
        self.options = options or engine.settings
        self.spec = spec or engine.settings.llm
        self.use_library = use_library
        self.history: list[Entry] = list(history)
        # True when this object writes its messages to the store (CLI, API); the app
        # leaves that to Chainlit's data layer, which stores the same messages.
        self.persist = persist
        self._uploads: uploads.ChatUploads | None = None

    # Attached files ---------------------------------------------------------

    @property
    def files_dir(self) -> Path | None:
        return self.engine.store.files_dir(self.id) if self.engine.store else None

    def _open_uploads(self, create: bool) -> uploads.ChatUploads | None:
        if self._uploads is None:
            folder = self.files_dir
            if create or (folder is not None and uploads.exists(self.engine.settings, folder)):
                self._uploads = uploads.create(
                    self.engine.settings, self.engine.shared.library.embedder, folder
                )
        return self._uploads

    async def attach(self, path: str | Path, name: str, consume: bool = False) -> str:
        """Ingest a file into this conversation's private library; one sentence back,
        also when the file cannot be added, so the next file of a message still is.
        With ``consume`` the file given is deleted afterwards, read or not (an upload's
        temporary copy: the chat keeps its own)."""
        try:
            chat_uploads = await asyncio.to_thread(self._open_uploads, True)
            assert chat_uploads is not None  # made when missing
            return await asyncio.to_thread(uploads.add, chat_uploads, str(path), name)
        except RagError as exc:
            return f"**{name}** could not be added: {exc}"
        finally:
            if consume:
                Path(path).unlink(missing_ok=True)

    async def add_to_library(
        self, path: str | Path, name: str, library: str, consume: bool = False
    ) -> str:
        """``attach``, into a shared library this reader may write to now (#24)."""
        try:
            return await asyncio.to_thread(
                uploads.add_for, self.engine.shelf, self.reader, library, str(path), name
            )
        finally:
            if consume:
                Path(path).unlink(missing_ok=True)

    async def files(self) -> list[str]:
        found = await asyncio.to_thread(self._open_uploads, False)
        return uploads.names(found) if found else []

    def libraries(self) -> list[Library]:
        """Blocking: the libraries this reader may read now, of those chosen (seeing `rag
        ingest` runs; the access record is read again on every call), and this chat's files."""
        found = self.engine.shelf.readable(self.reader, self.chosen) if self.use_library else []
        own = self._open_uploads(False)
        return found + ([own.library] if own else [])

    def configure(self, values: dict) -> None:
        """The chat's own options (the app's settings panel)."""
        globs = [g.strip() for g in str(values.get("sources") or "").split(",") if g.strip()]
        self.options = self.engine.settings.with_overrides(
            top_k=int(values["top_k"]), temperature=float(values["temperature"]), sources=globs
        )
        self.use_library = bool(values.get("use_library", True))
        switches = [k for k in values if k.startswith(LIBRARY_SWITCH)]
        if switches:  # the app's panel: the libraries switched on (of those readable)
            self.chosen = {k.removeprefix(LIBRARY_SWITCH) for k in switches if values[k]}
        add_to = str(values.get("add_to") or "")
        self.add_to = None if add_to in ("", CHAT_FILES) else add_to

    def readable_documents(self) -> list[Any]:
        """Blocking: the documents of every library this reader may read."""
        libraries = self.engine.shelf.readable(self.reader)
        return [d for lib in libraries for d in lib.store.documents().values()]

    async def greeting(self) -> str:
        """The welcome: how many documents, and which model answers (or why none can)."""
        documents = await asyncio.to_thread(self.readable_documents)
        private = sum(d.private for d in documents)
        try:
            model = await asyncio.to_thread(self.engine.pool(self.spec).load, self.spec)
            return transcript.welcome(len(documents), private, model.name, None, False)
        except RagError as exc:
            return transcript.welcome(
                len(documents), private, None, str(exc), bool(self.engine.settings.llm_fallback)
            )

    def close(self) -> None:
        """Release open files; nothing is deleted (the chat may be resumed)."""
        if self._uploads is not None:
            self._uploads.library.store.close()
            self._uploads = None

    # Answering --------------------------------------------------------------

    def messages(self) -> list[dict]:
        return [e.message() for e in self.history]

    async def prepare(self, question: str) -> Turn:
        libraries = await asyncio.to_thread(self.libraries)
        if not libraries:
            raise RagError(NO_LIBRARY)
        return await chat.prepare(question, libraries, self.options, self.messages())

    async def stream(
        self, turn: Turn, pool: ModelPool | None = None, remember: bool = True
    ) -> AsyncGenerator[str, None]:
        """The answer's text deltas. A whole answer becomes history (a failed or
        stopped one is nothing to build on). Close it (``contextlib.aclosing``) when
        the reader stops the answer, so the turn is marked stopped at once."""
        answer = chat.stream_answer(turn, pool or self.engine.pool(self.spec), self.options)
        async with contextlib.aclosing(answer) as deltas:  # closing this closes the answer
            async for delta in deltas:
                yield delta
        if remember:
            await self.remember(turn)

    async def ask(self, question: str) -> Turn:
        """The whole answer at once."""
        turn = await self.prepare(question)
        async for _ in self.stream(turn):
            pass
        return turn

    def retry(self, turn: Turn) -> Turn:
        """The same retrieval, ready for another model (``rag compare``)."""
        return Turn(
            turn.question,
            turn.hits,
            turn.history,
            search_query=turn.search_query,
            grounded=turn.grounded,
            # The same evidence and checks (citations attributed alike), as `rag ask`.
            evidence=list(turn.evidence),
            embedder=turn.embedder,
        )

    async def remember(self, turn: Turn) -> tuple[Entry, Entry]:
        """Add the turn to the history (and the store, when this object persists)."""
        question = Entry("user", turn.question, turn.private)
        # As shown, with the citations attributed after generation (the export's text).
        answer = Entry("assistant", turn.cited_text(), turn.private, sources(turn))
        self.history += [question, answer]
        store = self.engine.store
        if store is not None and turn.private:  # either form may come back as history
            await store.mark_private(
                list(dict.fromkeys([turn.question, turn.text, answer.content]))
            )
        if store is not None and self.persist:
            await self.save_thread(name=None)
            await store.add_message(
                self.id, "user", question.content, {"private": question.private}
            )
            await store.add_message(self.id, "assistant", answer.content, metadata(turn))
        return question, answer

    async def export_markdown(self) -> str:
        """This chat as Markdown with its sources: its own history, which is complete
        even while the store is still writing the last answer."""
        # Only the name and date come from the store: the steps are this object's history.
        row = await self.engine.store.thread_row(self.id) if self.engine.store else None
        thread = {"id": self.id}
        if row is not None:
            thread |= {"name": row["name"], "createdAt": row["created_at"]}
        readable = await asyncio.to_thread(self.engine.shelf.names, self.reader)
        return transcript.export_markdown(thread, self.history, readable=readable)

    async def save_thread(self, name: str | None) -> None:
        store = self.engine.store
        if store is None:
            return
        if await store.thread_row(self.id) is None:
            title = name or (self.history[0].content[:60] if self.history else "Chat")
            await store.upsert_thread(self.id, user_id=self.user_id, name=title)

    # Building from stored or sent messages ----------------------------------

    @classmethod
    def from_thread(cls, engine: Engine, thread: dict, **kwargs: Any) -> Conversation:
        """A stored chat (Chainlit's ThreadDict shape), ready to continue."""
        entries = entries_from_steps(thread.get("steps") or [])
        conv = cls(engine, id=thread["id"], user_id=thread.get("userId"), history=entries, **kwargs)
        chosen = (thread.get("metadata") or {}).get("chat_settings") or {}
        if {"top_k", "temperature"} <= set(chosen):
            conv.configure(chosen)  # the settings panel as the chat last had it
            if kwargs.get("chosen") is not None:  # the caller's choice (a served library) wins
                conv.chosen = set(kwargs["chosen"])
        return conv

    @classmethod
    async def from_messages(
        cls, engine: Engine, messages: Sequence[dict], **kwargs: Any
    ) -> tuple[Conversation, str]:
        """OpenAI-style messages (the last one the user's question): a conversation
        with their history and the question. A message that is the text of an answer
        made here from private documents (or its question) is private again."""
        turns = [m for m in messages if m.get("role") in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user":
            raise RagError("The last message must come from the user.")
        texts = [text_of(m.get("content")) for m in turns]
        private = await engine.store.private_texts(texts) if engine.store else set()
        entries = [Entry(m["role"], t, t in private) for m, t in zip(turns[:-1], texts)]
        link_private(entries)
        return cls(engine, history=entries, **kwargs), texts[-1]
