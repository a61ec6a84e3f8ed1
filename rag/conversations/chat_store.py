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
import hashlib
import json
import re
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
from rag.errors import RagError

MESSAGE_TYPES = ("user_message", "assistant_message")

meta = sa.MetaData()
t_meta = sa.Table(
    "meta", meta, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text)
)
t_users = sa.Table(
    "users",
    meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("identifier", sa.String(255), unique=True, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.String(40), nullable=False),
)
t_threads = sa.Table(
    "threads",
    meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), index=True),
    sa.Column("user_identifier", sa.String(255)),
    sa.Column("name", sa.Text),
    sa.Column("metadata", sa.Text, nullable=False, default="{}"),
    sa.Column("tags", sa.Text, nullable=False, default="[]"),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False, index=True),
)
t_steps = sa.Table(
    "steps",
    meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("thread_id", sa.String(64), index=True, nullable=False),
    sa.Column("parent_id", sa.String(64)),
    sa.Column("seq", sa.BigInteger, nullable=False),  # insertion order; timestamps can tie
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("input", sa.Text, nullable=False, default=""),
    sa.Column("output", sa.Text, nullable=False, default=""),
    sa.Column("metadata", sa.Text, nullable=False, default="{}"),
    sa.Column("extra", sa.Text, nullable=False, default="{}"),  # the rest of the step dict
    sa.Column("created_at", sa.String(40)),
)
t_elements = sa.Table(
    "elements",
    meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("thread_id", sa.String(64), index=True),
    sa.Column("for_id", sa.String(64)),
    sa.Column("type", sa.String(40)),
    sa.Column("name", sa.Text),
    sa.Column("display", sa.String(20)),
    sa.Column("mime", sa.String(120)),
    sa.Column("content", sa.Text),  # text elements (cited passages) only
    sa.Column("extra", sa.Text, nullable=False, default="{}"),
)
t_feedback = sa.Table(
    "feedback",
    meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("for_id", sa.String(64), index=True),
    sa.Column("thread_id", sa.String(64), index=True),
    sa.Column("value", sa.Integer),
    sa.Column("comment", sa.Text),
)
# Digests of texts made from private documents: a client of `rag serve` that sends
# such an answer back as history gets it treated as private again.
t_private = sa.Table("private_texts", meta, sa.Column("digest", sa.String(64), primary_key=True))

SCHEMA_VERSION = 1
# Migrations after version 1, by the version they lead to: lists of SQL statements.
MIGRATIONS: dict[int, list[str]] = {}


# A chat id is a UUID written as uuid4() writes it, and nothing else: the id names the
# chat's files folder as it is, so no other spelling can reach that folder.
_CHAT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_chat_id(value: object) -> bool:
    return isinstance(value, str) and _CHAT_ID.fullmatch(value) is not None


def chat_id(value: object) -> str:
    """``value`` when it is a chat id; anything else is refused."""
    if isinstance(value, str) and is_chat_id(value):
        return value
    raise RagError(
        f"{value!r} is not a chat id: a chat id is a UUID in lowercase, such as "
        f"{str(uuid.uuid4())!r}."
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def chats_dir(settings: Settings) -> Path:
    """Where chats keep their database and attached files: inside the index folder,
    which `rag ingest` never reads, so uploads cannot leak into the shared library."""
    return settings.chats_dir or settings.index / "chats"


def database_url(settings: Settings) -> str:
    url = settings.database_url
    if not url:
        return f"sqlite+aiosqlite:///{chats_dir(settings) / 'chats.sqlite3'}"
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    return url


def _load(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


class ChatStore:
    """Async access to stored chats. ``await ChatStore.connect(settings)`` first."""

    def __init__(self, engine: AsyncEngine, folder: Path) -> None:
        self.engine = engine
        self.folder = folder  # per-chat files live in folder/files/<chat id>
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
        store = cls(engine, folder)
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
            shutil.rmtree(self.files_dir(thread_id), ignore_errors=True)

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

    # Steps (messages and tool steps) -----------------------------------------

    async def upsert_step(self, step: dict) -> None:
        known = {
            "id",
            "threadId",
            "parentId",
            "type",
            "name",
            "input",
            "output",
            "metadata",
            "createdAt",
        }
        values = {
            "thread_id": chat_id(step["threadId"]),
            "parent_id": step.get("parentId"),
            "type": step.get("type") or "undefined",
            "name": step.get("name") or "",
            "input": step.get("input") or "",
            "output": step.get("output") or "",
            "metadata": json.dumps(step.get("metadata") or {}, default=str),
            "extra": json.dumps({k: v for k, v in step.items() if k not in known}, default=str),
            "created_at": step.get("createdAt") or now(),
        }
        async with self._step_writes, self.engine.begin() as db:
            row = (
                await db.execute(sa.select(t_steps.c.extra).where(t_steps.c.id == step["id"]))
            ).first()
            if row is not None:
                # An update may carry only some fields: keep what it does not say.
                given = {
                    k: v
                    for k, v in values.items()
                    if k in ("thread_id", "type") or step.get(_KEYS.get(k, k)) is not None
                }
                given["extra"] = json.dumps({**_load(row[0], {}), **_load(values["extra"], {})})
                await db.execute(t_steps.update().where(t_steps.c.id == step["id"]).values(**given))
            else:
                await db.execute(
                    t_steps.insert().values(id=step["id"], seq=time.time_ns(), **values)
                )
            await db.execute(
                t_threads.update()
                .where(t_threads.c.id == step["threadId"])
                .values(updated_at=now())
            )

    async def delete_step(self, step_id: str) -> None:
        async with self.engine.begin() as db:
            await db.execute(t_steps.delete().where(t_steps.c.id == step_id))
            await db.execute(t_elements.delete().where(t_elements.c.for_id == step_id))
            await db.execute(t_feedback.delete().where(t_feedback.c.for_id == step_id))

    async def steps(self, thread_id: str) -> list[dict]:
        async with self.engine.connect() as db:
            rows = (
                (
                    await db.execute(
                        sa.select(t_steps)
                        .where(t_steps.c.thread_id == thread_id)
                        .order_by(t_steps.c.created_at, t_steps.c.seq)
                    )
                )
                .mappings()
                .all()
            )
            marks = {
                r["for_id"]: r
                for r in (
                    await db.execute(
                        sa.select(t_feedback).where(t_feedback.c.thread_id == thread_id)
                    )
                ).mappings()
            }
        found = []
        for r in rows:
            step = {
                **_load(r["extra"], {}),
                "id": r["id"],
                "threadId": r["thread_id"],
                "parentId": r["parent_id"],
                "type": r["type"],
                "name": r["name"],
                "input": r["input"],
                "output": r["output"],
                "metadata": _load(r["metadata"], {}),
                "createdAt": r["created_at"],
            }
            if r["id"] in marks:
                m = marks[r["id"]]
                step["feedback"] = {
                    "id": m["id"],
                    "forId": m["for_id"],
                    "value": m["value"],
                    "comment": m["comment"],
                }
            found.append(step)
        return found

    async def add_message(
        self, thread_id: str, role: str, content: str, metadata: dict | None = None
    ) -> str:
        """A message written outside Chainlit (the CLI, the API)."""
        step_id = str(uuid.uuid4())
        await self.upsert_step(
            {
                "id": step_id,
                "threadId": thread_id,
                "type": f"{role}_message",
                "name": "You" if role == "user" else "Assistant",
                "output": content,
                "metadata": metadata or {},
                "createdAt": now(),
            }
        )
        return step_id

    # Elements (cited passages, attached files) -------------------------------

    async def upsert_element(self, element: dict) -> None:
        known = {"id", "threadId", "forId", "type", "name", "display", "mime", "content"}
        content = element.get("content")
        values = {
            "thread_id": element.get("threadId"),
            "for_id": element.get("forId"),
            "type": element.get("type"),
            "name": element.get("name"),
            "display": element.get("display"),
            "mime": element.get("mime"),
            "content": content if isinstance(content, str) else None,
            "extra": json.dumps(
                {
                    k: v
                    for k, v in element.items()
                    if k not in known and k not in ("path", "chainlitKey", "url")
                },
                default=str,
            ),
        }
        async with self.engine.begin() as db:
            await db.execute(t_elements.delete().where(t_elements.c.id == element["id"]))
            await db.execute(t_elements.insert().values(id=element["id"], **values))

    async def elements(self, thread_id: str, element_id: str | None = None) -> list[dict]:
        query = sa.select(t_elements).where(t_elements.c.thread_id == thread_id)
        if element_id:
            query = query.where(t_elements.c.id == element_id)
        async with self.engine.connect() as db:
            rows = (await db.execute(query)).mappings().all()
        return [
            {
                **_load(r["extra"], {}),
                "id": r["id"],
                "threadId": r["thread_id"],
                "forId": r["for_id"],
                "type": r["type"],
                "name": r["name"],
                "display": r["display"],
                "mime": r["mime"],
                "content": r["content"],
            }
            for r in rows
        ]

    async def delete_element(self, element_id: str) -> None:
        async with self.engine.begin() as db:
            await db.execute(t_elements.delete().where(t_elements.c.id == element_id))

    # Feedback ------------------------------------------------------------------

    async def upsert_feedback(
        self, feedback_id: str | None, for_id: str, value: int, comment: str | None
    ) -> str:
        feedback_id = feedback_id or str(uuid.uuid4())
        async with self.engine.begin() as db:
            thread = (
                await db.execute(sa.select(t_steps.c.thread_id).where(t_steps.c.id == for_id))
            ).first()
            await db.execute(t_feedback.delete().where(t_feedback.c.id == feedback_id))
            await db.execute(
                t_feedback.insert().values(
                    id=feedback_id,
                    for_id=for_id,
                    thread_id=thread[0] if thread else None,
                    value=value,
                    comment=comment,
                )
            )
        return feedback_id

    async def delete_feedback(self, feedback_id: str) -> bool:
        async with self.engine.begin() as db:
            await db.execute(t_feedback.delete().where(t_feedback.c.id == feedback_id))
        return True

    # Private texts --------------------------------------------------------------

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


_KEYS = {"thread_id": "threadId", "parent_id": "parentId", "created_at": "createdAt"}


def sweep_older(folder: Path, before: float) -> None:
    """Remove what a crashed run left in ``folder`` (entries older than ``before``)."""
    for entry in folder.glob("*") if folder.is_dir() else []:
        if entry.stat().st_mtime < before:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
