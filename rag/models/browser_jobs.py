"""The channel between a chat and the browser that writes its answers (#23).

A ``Link`` belongs to one chat page of one user: made when the chat opens, told by the
page whether it has WebGPU (``hello``), given jobs (a prompt's token ids) and fed back
the tokens the page generates. Link tokens and job ids are long random strings handed
only to that page's own Socket.IO session, and every call from the page names its user,
which must be the link's: another user, even one who learns an id, is told nothing
exists. Nothing here knows HTTP or Chainlit.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Notify = Callable[[dict], Awaitable[Any]]  # sends a message to the page (its window)
PROVIDERS = {"webgpu": "WebGPU", "wasm": "WASM"}
MESSAGE = "rag-browser-llm"  # the type of every window message the page listens for


class NotFound(LookupError):
    """No such link or job for this user (whether it exists for another is not said)."""


@dataclass
class Job:
    """One answer being written in the browser: what the page sent, in order."""

    id: str
    inbox: asyncio.Queue[dict] = field(default_factory=asyncio.Queue)


@dataclass
class Link:
    token: str
    user: str
    notify: Notify
    adapter: str | None = None  # the page's WebGPU adapter, None without one
    provider: str | None = None  # "webgpu" or "wasm" once the page said hello
    jobs: dict[str, Job] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.provider is not None

    def open_job(self) -> Job:
        job = Job(secrets.token_urlsafe(24))
        self.jobs[job.id] = job
        return job

    def close_job(self, job: Job) -> None:
        """The answer is over (finished, stopped or failed): the page's next call about
        it is refused, which stops its generation."""
        self.jobs.pop(job.id, None)


class Links:
    """Every open link of the process, by token."""

    def __init__(self) -> None:
        self._links: dict[str, Link] = {}

    def open(self, user: str, notify: Notify) -> Link:
        link = Link(secrets.token_urlsafe(24), user, notify)
        self._links[link.token] = link
        return link

    def __contains__(self, link: Link) -> bool:
        return self._links.get(link.token) is link

    def close(self, link: Link) -> None:
        for job in list(link.jobs.values()):
            job.inbox.put_nowait({"error": "the chat was closed"})
        self._links.pop(link.token, None)

    def _own(self, token: str, user: str | None) -> Link:
        link = self._links.get(token)
        # Compared in constant time like any secret; a stranger learns nothing.
        if link is None or user is None or not secrets.compare_digest(link.user, user):
            raise NotFound(token)
        return link

    def hello(self, token: str, user: str | None, webgpu: bool, adapter: str | None) -> Link:
        """The page says what it can do; it then writes on WebGPU, or on WASM without it."""
        link = self._own(token, user)
        link.adapter = (adapter or "WebGPU adapter")[:120] if webgpu else None
        link.provider = "webgpu" if webgpu else "wasm"
        return link

    def post(self, job_id: str, user: str | None, message: dict) -> None:
        """Tokens (or the end, or an error) from the page, for an answer of its user's."""
        for link in self._links.values():
            job = link.jobs.get(job_id)
            if job is not None:
                self._own(link.token, user)
                job.inbox.put_nowait(message)
                return
        raise NotFound(job_id)
