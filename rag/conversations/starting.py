"""An engine started once per process, by its first caller, and shared by every later one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedStart(Generic[T]):
    """An engine started by the first caller and shared by every later one. A caller
    that goes away (a closed tab) does not cancel the start; a start that failed
    (a model server not up yet) is tried again by the next caller."""

    def __init__(self, start: Callable[[], Awaitable[T]]) -> None:
        self._start = start
        self._task: asyncio.Future[T] | None = None

    async def __call__(self) -> T:
        task = self._task = self._task or asyncio.ensure_future(self._start())
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._task is task and task.done():
                self._task = None
            raise
