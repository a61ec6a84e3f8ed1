"""The records of a chat's history: its entries, and the stored shape of an answer.
They import nothing above them, so the conversation and its transcript both use them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from rag.answers.turn import Turn
from rag.conversations.chat_tables import MESSAGE_TYPES

LOCAL_USER = "local"  # the one user of a chat without login (loopback)


@dataclass
class Entry:
    """One message of the conversation, with where its content came from."""

    role: str  # "user" or "assistant"
    content: str
    private: bool = False
    sources: list[dict] = field(default_factory=list)  # an answer's cited passages

    def message(self) -> dict:
        return {"role": self.role, "content": self.content, "private": self.private}


def text_of(content: object) -> str:
    """A message's text: a string, or OpenAI's list of content parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def sources(turn: Turn) -> list[dict]:
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    return [
        {
            "n": n,
            "label": h.chunk.label(),
            "source": h.chunk.source,
            "cited": cited,
            "private": bool(h.chunk.extra.get("private")),
            "library": h.chunk.extra.get("library"),
            "text": h.chunk.text,
        }
        for n, h in shown
    ]


def metadata(turn: Turn) -> dict:
    """What an answer's stored message carries besides its shown text."""
    return {
        "private": turn.private,
        "answer": turn.cited_text(),  # with the citations attributed after generation
        "sources": sources(turn),
        "contradicted": [c.as_dict() for c in turn.contradicted],
        "model": turn.model,
        "notices": turn.notices(),
        "stopped": turn.stopped,
    }


def entries_from_steps(steps: Sequence[dict]) -> list[Entry]:
    entries: list[Entry] = []
    for step in steps:
        if step.get("type") not in MESSAGE_TYPES:
            continue
        meta = step.get("metadata") or {}
        role = "user" if step["type"] == "user_message" else "assistant"
        if role == "assistant" and "answer" not in meta:
            continue  # the welcome and notes such as "Added file.pdf to this chat"
        if role == "assistant" and meta.get("stopped"):
            # Only whole answers are history: a stopped one is nothing to build on.
            if entries and entries[-1].role == "user":
                entries.pop()
            continue
        content = meta.get("answer", step.get("output") or "")
        entries.append(Entry(role, content, bool(meta.get("private")), meta.get("sources", [])))
    link_private(entries)
    return entries


def link_private(entries: list[Entry]) -> None:
    """A question whose answer is private is private too (and the other way round)."""
    for before, after in pairwise(entries):
        if (
            before.role == "user"
            and after.role == "assistant"
            and (before.private or after.private)
        ):
            before.private = after.private = True
