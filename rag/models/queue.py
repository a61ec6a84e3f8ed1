"""The line in front of a model: up to its number of answers at once, the rest wait.

A model in this process answers one question at a time; a model server may answer
several (llama.cpp's ``--parallel``, vLLM): ``RAG_LLM_CONCURRENCY``, or what the server
says. Every loaded model gets a ``Gate`` (rag/models/routing.py wraps it in
``QueuedChat``), so a question that waits knows its place in the line, and one that
waits longer than ``RAG_QUEUE_TIMEOUT_S`` gets ``ModelBusy`` instead of hanging:
before its first word, so a fallback model may still take it.

Who waits hears about it through ``reporting``: the app and ``rag serve`` set a
callback around the first step of an answer; the gate calls it with the place
(1 = next) whenever the place changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar

from rag.errors import ModelBusy
from rag.models.base import ChatModel, Message, aclose

Report = Callable[[int], object]  # the place in line (1 = next); may be a coroutine function

_report: ContextVar[Report | None] = ContextVar("queue_report", default=None)


@contextlib.contextmanager
def reporting(report: Report | None) -> Iterator[None]:
    """Tell ``report`` this task's place whenever it waits for a model in this block."""
    token = _report.set(report)
    try:
        yield
    finally:
        _report.reset(token)


class Gate:
    """Admits ``limit`` answers at once, the others in the order they came."""

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = max(1, limit)
        self.timeout = timeout
        self.running = 0
        self.line: list[object] = []  # a ticket per waiting answer, the next one first
        self._changed: asyncio.Future[None] | None = None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        await self._enter(_report.get())
        try:
            yield
        finally:
            self.running -= 1
            self._wake()

    async def _enter(self, report: Report | None) -> None:
        if not self.line and self.running < self.limit:
            self.running += 1
            return
        loop = asyncio.get_running_loop()
        ticket = object()
        self.line.append(ticket)
        deadline = loop.time() + self.timeout
        told = 0
        try:
            while True:
                place = self.line.index(ticket) + 1
                if place == 1 and self.running < self.limit:
                    self.line.pop(0)
                    self.running += 1
                    self._wake()  # the next one moves up
                    return
                if report is not None and place != told:
                    told = place
                    if inspect.isawaitable(result := report(place)):
                        await result
                changed = asyncio.shield(self._change(loop))
                try:
                    await asyncio.wait_for(changed, deadline - loop.time())
                except TimeoutError:
                    raise ModelBusy(
                        f"The model is busy: this question waited {self.timeout:g} s in line "
                        f"(place {self.line.index(ticket) + 1}) and was not answered; ask again "
                        "in a moment (RAG_QUEUE_TIMEOUT_S sets the wait, RAG_LLM_CONCURRENCY "
                        "how many answers a model server gives at once)."
                    ) from None
        finally:
            if ticket in self.line:
                self.line.remove(ticket)
                self._wake()

    def _change(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        if self._changed is None or self._changed.done() or self._changed.get_loop() is not loop:
            self._changed = loop.create_future()
        return self._changed

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)


class QueuedChat:
    """A chat model behind its gate; otherwise the model itself."""

    def __init__(self, model: ChatModel, gate: Gate) -> None:
        self.model = model
        self.gate = gate
        self.name = model.name
        self.context_window = model.context_window
        self.local = model.local

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        async with self.gate.turn():
            deltas = self.model.stream(
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                repetition_penalty=repetition_penalty,
            )
            try:
                async for delta in deltas:
                    yield delta
            finally:
                await aclose(deltas)


def parallel(model: ChatModel) -> int:
    """How many answers ``model`` gives at once: a server's own count, else one."""
    return int(getattr(model, "parallel", 1) or 1)
