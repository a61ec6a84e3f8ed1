"""The chat history's tables, schema version and ids: the records of the chat store,
importing nothing above them."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

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


_KEYS = {"thread_id": "threadId", "parent_id": "parentId", "created_at": "createdAt"}


def sweep_older(folder: Path, before: float) -> None:
    """Remove what a crashed run left in ``folder`` (entries older than ``before``)."""
    for entry in folder.glob("*") if folder.is_dir() else []:
        if entry.stat().st_mtime < before:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
