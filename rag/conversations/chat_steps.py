"""The messages (steps), files (elements) and feedback of stored chats: the half of
``ChatStore`` that Chainlit's data layer writes message by message."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from rag.conversations.chat_tables import (
    _KEYS,
    _load,
    chat_id,
    now,
    t_elements,
    t_feedback,
    t_steps,
    t_threads,
)


class ChatSteps:
    """Steps, elements and feedback; ``ChatStore`` adds chats, users and private texts."""

    engine: AsyncEngine
    _step_writes: asyncio.Lock

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
