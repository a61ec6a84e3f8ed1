"""The line in front of a model (rag/models/queue.py): so many answers at once, the
others wait in the order they came and hear their place; a wait that lasts too long
ends with a clear ``ModelBusy``. Driven by real asyncio tasks; the model here is a
stand-in whose answer waits for the test (the gate is what is tested, not a model)."""

from __future__ import annotations

import asyncio

import pytest

from rag.errors import ModelBusy
from rag.models.queue import Gate, QueuedChat, reporting


class Waiting:
    """A chat model whose every answer waits for ``go``; it counts answers at once."""

    name = "waiting"
    context_window = 4096
    local = True

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.active = 0
        self.most = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def stream(self, messages, *, max_tokens, temperature, repetition_penalty=None):
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            yield "begun "
            await self.go.wait()
            yield "done"
        finally:
            self.active -= 1


async def ask(chat: QueuedChat, places: list[int], started: asyncio.Event) -> str:
    with reporting(places.append):
        stream = chat.stream([], max_tokens=8, temperature=0)
        first = await anext(stream)
        started.set()
        return first + "".join([d async for d in stream])


async def until(condition, deadline: float = 30) -> None:
    async with asyncio.timeout(deadline):
        while not condition():
            await asyncio.sleep(0.01)


async def test_two_at_once_the_others_wait_in_order_and_hear_their_place():
    model = Waiting()
    chat = QueuedChat(model, Gate(2, timeout=60))
    places: list[list[int]] = [[] for _ in range(4)]
    started = [asyncio.Event() for _ in range(4)]
    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(ask(chat, places[n], started[n])))
        await asyncio.sleep(0)  # in this order
    await until(lambda: model.active == 2 and len(places[3]) == 1)
    assert places[:2] == [[], []]  # admitted at once, never told a place
    assert places[2:] == [[1], [2]]
    model.go.set()
    answers = await asyncio.gather(*tasks)
    assert answers == ["begun done"] * 4
    assert model.most == 2
    assert places[3][0] == 2 and places[3] == sorted(places[3], reverse=True)  # only up


async def test_a_question_that_waits_too_long_is_told_the_model_is_busy():
    model = Waiting()
    chat = QueuedChat(model, Gate(1, timeout=0.2))
    first = asyncio.create_task(ask(chat, [], asyncio.Event()))
    await until(lambda: model.active == 1)
    places: list[int] = []
    with pytest.raises(ModelBusy, match=r"busy.*RAG_QUEUE_TIMEOUT_S"):
        await ask(chat, places, asyncio.Event())
    assert places == [1]
    assert chat.gate.line == []  # it left the line
    model.go.set()
    assert await first == "begun done"
    assert chat.gate.running == 0


async def test_a_question_cancelled_while_waiting_leaves_the_line():
    model = Waiting()
    chat = QueuedChat(model, Gate(1, timeout=60))
    first = asyncio.create_task(ask(chat, [], asyncio.Event()))
    await until(lambda: model.active == 1)
    waiting = asyncio.create_task(ask(chat, [], asyncio.Event()))
    await until(lambda: len(chat.gate.line) == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert chat.gate.line == []
    model.go.set()
    assert await first == "begun done"
    assert await ask(chat, [], asyncio.Event()) == "begun done"  # the next goes straight in
