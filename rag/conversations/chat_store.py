"""Stored conversations: users, chats (threads), their messages (steps) and elements.

One schema on SQLAlchemy Core, the same on SQLite (the default, a file in the
chats folder inside the index folder) and PostgreSQL (``RAG_DATABASE_URL`` or
``DATABASE_URL``). The app creates and migrates it: ``meta.schema_version``
says which migrations ran. JSON values are stored as text, so nothing depends
on a database's JSON or array types (what trips Chainlit's own SQL layer on
SQLite).

The shape of rows follows Chainlit's thread, step and element dictionaries so
that the Chainlit adapter (app_datalayer.py) is a thin mapping; the CLI and the
conversation service use the same store without Chainlit.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rag.config import Settings
from rag.conversations import uploads
from rag.conversations.chat_steps import ChatSteps
from rag.conversations.chat_tables import (
    MIGRATIONS,
    SCHEMA_VERSION,
    _load,
    chat_id,
    chats_dir,
    database_url,
    digest,
    is_chat_id,
    meta,
    now,
    t_elements,
    t_feedback,
    t_meta,
    t_private,
    t_steps,
    t_threads,
    t_users,
)
from rag.errors import RagError


class ChatStore(ChatSteps):
    """Async access to stored chats. ``await ChatStore.connect(settings)`` first."""

    def __init__(self, engine: AsyncEngine, folder: Path, settings: Settings | None = None) -> None:
        self.engine = engine
        self.folder = folder  # per-chat files live in folder/files/<chat id>
        # Where a chat's files live besides its folder (a shared Chroma server), to delete them.
        self.settings = settings
        # Chainlit creates and updates a message in tasks of their own: two writes of one
        # step may run at once, and both would find no row and insert it.
        self._step_writes = asyncio.Lock()

    @classmethod
    async def connect(cls, settings: Settings) -> ChatStore:
        folder = chats_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        # Everyone's chats and files: this account's alone, also where an older version
        # made the folder readable by all.
        folder.chmod(0o700)
        engine = create_async_engine(database_url(settings))
        store = cls(engine, folder, settings)
        try:
            await store.migrate()
        except sa.exc.DBAPIError:
            # Another process (a replica starting at the same moment) or engine made the
            # tables or stamped the version meanwhile (#25): the second look finds them.
            await store.migrate()
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        async with self.engine.begin() as db:
            await db.run_sync(meta.create_all)
            row = (
                await db.execute(sa.select(t_meta.c.value).where(t_meta.c.key == "schema_version"))
            ).first()
            version = int(row[0]) if row else 0
            if version == 0:
                await db.execute(
                    t_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                )
                return
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(target, []):
                    await db.execute(sa.text(statement))
                await db.execute(
                    t_meta.update()
                    .where(t_meta.c.key == "schema_version")
                    .values(value=str(target))
                )

    # Users ------------------------------------------------------------------

    async def user(self, identifier: str) -> dict | None:
        async with self.engine.connect() as db:
            row = (
                (await db.execute(sa.select(t_users).where(t_users.c.identifier == identifier)))
                .mappings()
                .first()
            )
        return None if row is None else {**row, "metadata": _load(row["metadata"], {})}

    async def ensure_user(self, identifier: str, metadata: dict | None = None) -> dict:
        found = await self.user(identifier)
        if found:
            return found
        row = {
            "id": str(uuid.uuid4()),
            "identifier": identifier,
            "metadata": json.dumps(metadata or {}),
            "created_at": now(),
        }
        try:
            async with self.engine.begin() as db:
                await db.execute(t_users.insert().values(**row))
        except sa.exc.IntegrityError:
            pass  # created meanwhile by another request
        return await self.user(identifier)  # type: ignore[return-value]

    # Threads ----------------------------------------------------------------

    async def upsert_thread(
        self,
        thread_id: str,
        *,
        user_id: str | None = None,
        name: str | None = None,
        metadata: dict | None = None,
        tags: list[str] | None = None,
    ) -> None:
        async with self.engine.begin() as db:
            row = (
                (await db.execute(sa.select(t_threads).where(t_threads.c.id == thread_id)))
                .mappings()
                .first()
            )
            values: dict[str, Any] = {"updated_at": now()}
            if name is not None:
                values["name"] = name
            if tags is not None:
                values["tags"] = json.dumps(tags)
            if row is None:
                chat_id(thread_id)  # a new chat only under an id that names nothing else
            elif user_id is not None and row["user_id"] not in (None, user_id):
                raise RagError(f"The chat {thread_id!r} belongs to another user.")
            if user_id is not None:
                values["user_id"] = user_id
                owner = (
                    await db.execute(sa.select(t_users.c.identifier).where(t_users.c.id == user_id))
                ).first()
                values["user_identifier"] = owner[0] if owner else None
            if metadata is not None:
                old = _load(row["metadata"], {}) if row else {}
                values["metadata"] = json.dumps({**old, **metadata}, default=str)
            if row is None:
                await db.execute(
                    t_threads.insert().values(
                        id=thread_id,
                        created_at=values["updated_at"],
                        **{"metadata": "{}", "tags": "[]", **values},
                    )
                )
            else:
                await db.execute(
                    t_threads.update().where(t_threads.c.id == thread_id).values(**values)
                )

    async def thread_row(self, thread_id: str) -> dict | None:
        async with self.engine.connect() as db:
            row = (
                (await db.execute(sa.select(t_threads).where(t_threads.c.id == thread_id)))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return {**row, "metadata": _load(row["metadata"], {}), "tags": _load(row["tags"], [])}

    async def thread(self, thread_id: str) -> dict | None:
        """The thread with its steps and elements, in Chainlit's ThreadDict shape."""
        row = await self.thread_row(thread_id)
        if row is None:
            return None
        return {
            "id": row["id"],
            "createdAt": row["created_at"],
            "name": row["name"],
            "userId": row["user_id"],
            "userIdentifier": row["user_identifier"],
            "tags": row["tags"],
            "metadata": row["metadata"],
            "steps": await self.steps(thread_id),
            "elements": await self.elements(thread_id),
        }

    async def list_threads(
        self,
        user_id: str | None,
        *,
        search: str | None = None,
        first: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[dict], bool]:
        """Newest first; with ``user_id`` only that user's. Returns (page, more after it)."""
        query = sa.select(t_threads).order_by(t_threads.c.updated_at.desc(), t_threads.c.id)
        if user_id is not None:
            query = query.where(t_threads.c.user_id == user_id)
        if search:
            hits = sa.select(t_steps.c.thread_id).where(
                sa.func.lower(t_steps.c.output).contains(search.lower())
            )
            query = query.where(
                sa.or_(
                    sa.func.lower(t_threads.c.name).contains(search.lower()),
                    t_threads.c.id.in_(hits),
                )
            )
        async with self.engine.connect() as db:
            rows = [dict(r) for r in (await db.execute(query)).mappings()]
        if cursor:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(cursor) + 1 :] if cursor in ids else []
        page = rows[:first]
        for r in page:
            r["metadata"], r["tags"] = _load(r["metadata"], {}), _load(r["tags"], [])
        return page, len(rows) > first

    def files_dir(self, thread_id: str) -> Path:
        """The chat's attached files and their index: a folder named by the exact id
        (ids made before ids were checked are UUIDs too, so their folders keep their
        names)."""
        return self.folder / "files" / chat_id(thread_id)

    async def delete_thread(self, thread_id: str) -> None:
        """The chat, its messages, elements, feedback, and its files with their index."""
        async with self.engine.begin() as db:
            for table in (t_feedback, t_elements, t_steps):
                await db.execute(table.delete().where(table.c.thread_id == thread_id))
            await db.execute(t_threads.delete().where(t_threads.c.id == thread_id))
        # A chat stored under another kind of id (before ids were checked) has no folder
        # of its own: the folder its cleaned id pointed at may be another chat's.
        if is_chat_id(thread_id):
            if self.settings is None:
                shutil.rmtree(self.files_dir(thread_id), ignore_errors=True)
            else:
                await asyncio.to_thread(uploads.delete, self.settings, self.files_dir(thread_id))

    async def expire(self, days: int) -> list[str]:
        """Delete chats untouched for ``days`` days; returns their ids."""
        if days <= 0:
            return []
        limit = (
            (datetime.now(UTC) - timedelta(days=days))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        async with self.engine.connect() as db:
            old = [
                r[0]
                for r in await db.execute(
                    sa.select(t_threads.c.id).where(t_threads.c.updated_at < limit)
                )
            ]
        for thread_id in old:
            await self.delete_thread(thread_id)
        return old

    async def sweep_files(self) -> list[str]:
        """File folders whose chat no longer exists (a crash between the two deletes)."""
        root = self.folder / "files"
        if not root.is_dir():
            return []
        async with self.engine.connect() as db:
            known = {r[0] for r in await db.execute(sa.select(t_threads.c.id))}
        gone = []
        for folder in root.iterdir():
            # A new chat's files come before its first stored message: spare fresh ones.
            if folder.name not in known and time.time() - folder.stat().st_mtime > 24 * 3600:
                shutil.rmtree(folder, ignore_errors=True)
                gone.append(folder.name)
        return gone

    async def mark_private(self, texts: Iterable[str]) -> None:
        digests = {digest(t) for t in texts if t.strip()}
        async with self.engine.begin() as db:
            known = {
                r[0]
                for r in await db.execute(
                    sa.select(t_private.c.digest).where(t_private.c.digest.in_(digests))
                )
            }
            for d in digests - known:
                await db.execute(t_private.insert().values(digest=d))

    async def private_texts(self, texts: Iterable[str]) -> set[str]:
        """Which of ``texts`` were made from private documents here."""
        by_digest = {digest(t): t for t in texts}
        async with self.engine.connect() as db:
            found = {
                r[0]
                for r in await db.execute(
                    sa.select(t_private.c.digest).where(t_private.c.digest.in_(list(by_digest)))
                )
            }
        return {by_digest[d] for d in found}
