"""Running a blocking token generator in a thread and reading it from async code.

In-process runtimes (ONNX Runtime GenAI, Foundry Local's SDK) generate in
blocking native calls. Running them on the event loop would freeze every chat,
so each generation runs in its own thread and hands tokens back through an
``asyncio.Queue``. Cancelling the reader sets ``cancel``, which the producer
checks between tokens (and may use to interrupt native work at once).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator

_END = object()

Producer = Callable[[threading.Event], Iterator[str]]


async def stream_in_thread(
    produce: Producer, *, on_cancel: Callable[[], None] | None = None, name: str = "generate"
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    cancel = threading.Event()

    def emit(item: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            for text in produce(cancel):
                if cancel.is_set():
                    break
                emit(text)
        except BaseException as exc:
            emit(exc)
        finally:
            emit(_END)

    threading.Thread(target=work, name=name, daemon=True).start()
    producer_done = False
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                producer_done = True
                raise item
            yield item  # type: ignore[misc]
        producer_done = True
    finally:
        # The reader left early: Stop pressed, task cancelled, or iterator closed.
        if not producer_done:
            cancel.set()
            if on_cancel is not None:
                on_cancel()


def wait_for_turn(lock: threading.Lock, cancel: threading.Event) -> bool:
    """Take ``lock`` unless the request is cancelled while it waits."""
    while not lock.acquire(timeout=0.05):
        if cancel.is_set():
            return False
    return True
