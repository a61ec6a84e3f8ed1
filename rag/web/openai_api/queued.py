"""A streamed answer whose question waits in line for its model (#25): the places it is
told, then its first words, or the error that ended the wait."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from rag.errors import ModelUnavailable, RagError
from rag.web.openai_api.errors import ApiError, bad_request, unavailable

QUEUED_COMMENT = "queued: place"  # an SSE comment while a streamed question waits in line


async def next_place(step: asyncio.Future[str], places: asyncio.Queue[int]) -> int | None:
    """The next place in line the request is told, or None once its first words came."""
    if not places.empty():
        return places.get_nowait()
    told = asyncio.ensure_future(places.get())
    either: set[asyncio.Future[Any]] = {step, told}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if told.done():
        return told.result()
    told.cancel()
    return None


async def first_piece(step: asyncio.Future[str]) -> str:
    try:
        return await step
    except ModelUnavailable as exc:
        raise unavailable(str(exc)) from exc
    except RagError as exc:  # e.g. a conversation id of another user's chat
        raise bad_request(str(exc), "messages") from exc


async def queued(
    place: int | None,
    step: asyncio.Future[str],
    places: asyncio.Queue[int],
    then: Callable[[str], AsyncIterator[dict]],
) -> AsyncIterator[dict]:
    """A stream that starts while its question waits in line: a comment per place
    (OpenAI clients skip comments; a person's client may show them), then the answer;
    a wait that ends without one (RAG_QUEUE_TIMEOUT_S) ends in an error event."""
    try:
        while place is not None:
            yield {"comment": f"{QUEUED_COMMENT} {place}"}
            place = await next_place(step, places)
        first = await first_piece(step)
    except ApiError as exc:
        yield {"data": json.dumps(exc.body())}
        return
    finally:
        step.cancel()  # a client gone while in line leaves the line
    async for event in then(first):
        yield event
