"""``rag serve``: an OpenAI-compatible HTTP API over the library and the chat model.

Routes: ``GET /v1/models`` (and ``/v1/models/{id}``), ``POST /v1/chat/completions``
(streamed as server-sent events, or whole), ``POST /v1/embeddings``. The model ids
are in rag/web/openai_api/catalog.py; the shapes in rag/web/openai_api/protocol.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rag.config import Settings
from rag.conversations.chat_tables import chat_id as valid_chat_id
from rag.conversations.conversation import Engine
from rag.conversations.stored_chats import Conversations
from rag.errors import ModelUnavailable, RagError
from rag.library.access import OWNER, Reader
from rag.library.freshness import LiveLibrary
from rag.library.search import Library, open_library
from rag.models.base import aclose
from rag.models.queue import reporting
from rag.models.routing import ModelPool
from rag.web import limits
from rag.web.keys import Keys, Readers
from rag.web.openai_api import protocol
from rag.web.openai_api.answers import Answer, answer_directly, answer_from_library
from rag.web.openai_api.catalog import RAG_MODEL, Catalog, Target, model_id
from rag.web.openai_api.errors import WRONG_KEY, ApiError, bad_request, unavailable, unknown_model
from rag.web.openai_api.queued import first_piece, next_place, queued
from rag.web.throttle import Guesses, retry_after

__all__ = ["RAG_MODEL", "create_app", "describe", "model_id", "open_libraries"]

CONVERSATION_HEADER = "x-conversation-id"  # continue (or start) a stored chat by its id
SOURCES_HEADER = "x-rag-sources"  # "text": end the answer with its sources, for any rag model
MAX_INPUTS = 2048  # texts per embeddings request, as OpenAI allows
# After SIGTERM a stream has this long to send its error event before it is cut
# (uvicorn waits limits.SHUTDOWN_SECONDS for every request in flight).
SHUTDOWN_GRACE_SECONDS = 2
SHUTTING_DOWN = ApiError(
    503, "The server is shutting down: ask again once it is back.", "server_shutting_down"
)

Handler = Callable[[Request], Awaitable[Response]]


def open_libraries(settings: Settings, collections: list[str]) -> dict[str, Library]:
    """Each collection of the index as a library; they share one embedding model."""
    libraries: dict[str, Library] = {}
    for name in dict.fromkeys(collections):
        shared = next(iter(libraries.values())).embedder if libraries else None
        libraries[name] = open_library(settings.with_overrides(collection=name), shared)
    return libraries


def describe(libraries: Mapping[str, Library]) -> list[str]:
    """One line per served collection, so a misspelt (empty) one shows at start-up."""
    lines = []
    for name, library in libraries.items():
        count = len(library.store.documents())
        lines.append(
            f"rag-{model_id(name)}: {count} document(s)"
            if count
            else f"rag-{model_id(name)}: no documents yet; add some with "
            f"`rag ingest --collection {name} PATH`"
        )
    return lines


def create_app(
    settings: Settings,
    libraries: Mapping[str, Library] | Library,
    pool: ModelPool,
    api_key: str | None = None,
    keys: Keys | None = None,
) -> Starlette:
    """The API over ``libraries`` (collection name to library; the first is the default)
    and every library of the access record; ``keys``: per-user keys (#24)."""
    if isinstance(libraries, Library):
        libraries = {settings.collection: libraries}
    started = int(time.time())
    embedder = next(iter(libraries.values())).embedder  # one embedding model for all
    chat_name = pool.load(settings.llm).name
    catalog = Catalog(libraries, chat_name, embedder.name)
    # One conversation service; each request reads only the library its model names.
    engine = Engine(settings, LiveLibrary(next(iter(libraries.values()))), opened=libraries)
    chats = Conversations(engine)
    shelf = engine.shelf
    static = list(libraries)
    readers = Readers(api_key, keys)

    def catalog_of(reader: Reader) -> Catalog:
        """The ids this reader may use, from the access record as it is now: a library
        it may not read is no id at all."""
        listed = shelf.access.libraries()
        if reader == OWNER and not listed:
            return catalog  # no libraries: as before them
        served = dict.fromkeys([*static, *listed])
        readable = set(shelf.names(reader))
        names = [n for n in served if n in readable]
        return Catalog(names, chat_name, embedder.name, limited=reader.only is not None)

    guesses = Guesses(settings)  # wrong keys, per client address

    def guarded(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            request.state.reader = OWNER
            if readers.required():
                address = request.client.host if request.client else ""
                if wait := guesses.begin(address):
                    return _too_many(wait)
                reader = await asyncio.to_thread(readers.of, request.headers.get("authorization"))
                if reader is None:
                    return WRONG_KEY.response()
                guesses.succeeded(address)
                request.state.reader = reader
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return checked

    async def list_models(request: Request) -> Response:
        offered = await asyncio.to_thread(catalog_of, request.state.reader)
        return JSONResponse(
            {
                "object": "list",
                "data": [protocol.model_entry(name, started) for name in offered.listed],
            }
        )

    async def get_model(request: Request) -> Response:
        name = request.path_params["model"]
        offered = await asyncio.to_thread(catalog_of, request.state.reader)
        if not (offered.chat(name) or offered.embeds(name)):
            raise unknown_model(name, offered.listed)
        return JSONResponse(protocol.model_entry(name, started))

    async def completions(request: Request) -> Response:
        req = protocol.parse(protocol.ChatRequest, await request.body())
        reader: Reader = request.state.reader
        target = _target(await asyncio.to_thread(catalog_of, reader), req.model)
        if req.stream_options is not None and not req.stream:
            raise bad_request(
                "stream_options is only allowed when stream is true.", "stream_options"
            )
        options = settings.with_overrides(
            max_answer_tokens=req.answer_tokens, temperature=req.temperature
        )
        wants_text = request.headers.get(SOURCES_HEADER, "").strip().lower() == "text"
        chat_id = _conversation_id(request)
        answer = _answer(
            target,
            _messages(req, target, settings.max_question_chars),
            options,
            req.stops,
            pool,
            wants_text,
            chats,
            chat_id,
            reader,
        )
        # Wait for the first piece before answering, so a model that cannot answer is
        # a 503, not a stream that breaks off; unless the question waits in line for
        # its model: then a stream starts at once and says its place (rag/models/queue.py).
        places: asyncio.Queue[int] = asyncio.Queue()
        with reporting(places.put_nowait):
            step = asyncio.ensure_future(anext(answer.text, ""))
        place = await next_place(step, places)
        call = protocol.new_id()
        usage = bool(req.stream_options and req.stream_options.include_usage)
        stopping = anyio.Event()  # set by sse-starlette when the server shuts down
        if req.stream and place is not None:

            def then(first: str) -> AsyncIterator[dict]:
                return _events(call, req.model, first, answer, usage, stopping)

            return _event_stream(queued(place, step, places, then), stopping)
        first = await first_piece(step)
        if req.stream:
            return _event_stream(_events(call, req.model, first, answer, usage, stopping), stopping)
        try:
            text = first + "".join([delta async for delta in answer.text])
        except ModelUnavailable as exc:
            raise unavailable(str(exc)) from exc
        return JSONResponse(
            protocol.completion(
                call,
                req.model,
                text,
                answer.finish_reason,
                protocol.usage(answer.prompt_tokens, answer.completion_tokens),
                _extra(answer),
            )
        )

    async def embeddings(request: Request) -> Response:
        req = protocol.parse(protocol.EmbeddingRequest, await request.body())
        if not catalog.embeds(req.model):
            raise ApiError(
                404,
                f"The model {req.model!r} does not embed; use {catalog.embedding_model!r}.",
                "model_not_found",
                "model",
            )
        texts = req.texts
        if len(texts) > MAX_INPUTS or any(not t for t in texts):
            raise bad_request(f"input must be 1 to {MAX_INPUTS} non-empty strings.", "input")
        vectors = await asyncio.to_thread(embedder.embed, texts)  # blocking: off the loop
        if req.dimensions is not None and req.dimensions != len(vectors[0]):
            raise bad_request(
                f"{catalog.embedding_model} makes vectors of {len(vectors[0])} dimensions only.",
                "dimensions",
            )
        tokens = sum(await asyncio.to_thread(embedder.count_tokens, texts))
        return JSONResponse(protocol.embeddings(req.model, vectors, req.encoding_format, tokens))

    app = Starlette(
        routes=[
            Route("/v1/models", guarded(list_models)),
            Route("/v1/models/{model:path}", guarded(get_model)),
            Route("/v1/chat/completions", guarded(completions), methods=["POST"]),
            Route("/v1/embeddings", guarded(embeddings), methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        middleware=[
            Middleware(
                limits.RequestLimits,
                max_bytes=limits.body_limit(settings),
                timeout=settings.request_timeout,
            )
        ],
    )
    app.state.models = catalog.listed
    return app


def _too_many(wait: float) -> Response:
    seconds = retry_after(wait)
    refused = ApiError(
        429, f"Too many wrong API keys: try again in {seconds} s.", "rate_limit_exceeded"
    ).response()
    refused.headers["Retry-After"] = seconds
    return refused


def _target(catalog: Catalog, name: str) -> Target:
    target = catalog.chat(name)
    if target is None and catalog.embeds(name):
        raise bad_request(f"{name!r} is an embedding model: use /v1/embeddings.", "model")
    if target is None:
        raise unknown_model(name, catalog.listed)
    return target


def _conversation_id(request: Request) -> str | None:
    """The stored chat a request names: exactly a chat id (a UUID), or none."""
    value = request.headers.get(CONVERSATION_HEADER) or None
    try:
        return None if value is None else valid_chat_id(value)
    except RagError as exc:
        raise bad_request(f"X-Conversation-Id: {exc}", "X-Conversation-Id") from exc


def _messages(req: protocol.ChatRequest, target: Target, max_chars: int) -> list[dict[str, str]]:
    messages = []
    for m in req.plain_messages():
        if m["role"] in ("tool", "function"):
            raise bad_request("Tool messages are not supported.", "messages")
        if len(m["content"]) > max_chars:  # a clear 400, before any model is asked
            raise bad_request(
                f"A message is longer than this server accepts ({len(m['content'])} "
                f"characters; at most {max_chars}, RAG_MAX_QUESTION_CHARS).",
                "messages",
            )
        # developer is the newer name of system
        messages.append({**m, "role": "system" if m["role"] == "developer" else m["role"]})
    if target.collection is not None and (
        messages[-1]["role"] != "user" or not messages[-1]["content"].strip()
    ):
        raise bad_request("The last message must be the user's question.", "messages")
    return messages


def _answer(
    target: Target,
    messages: list[dict[str, str]],
    options: Settings,
    stops: list[str],
    pool: ModelPool,
    sources_in_text: bool,
    conversations: Conversations,
    chat_id: str | None,
    reader: Reader,
) -> Answer:
    if target.collection is None:
        return answer_directly(messages, pool, options, stops)
    return answer_from_library(
        messages,
        conversations,
        pool,
        options,
        stops,
        collection=target.collection,
        chat_id=chat_id,
        sources_in_text=target.sources_in_text or sources_in_text,
        reader=reader,
    )


def _event_stream(events: AsyncIterator[dict], stopping: anyio.Event) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        sep="\n",
        ping=15,
        shutdown_event=stopping,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


def _extra(answer: Answer) -> dict:
    return {"rag": answer.rag} if answer.rag is not None else {}


async def _events(
    call: str,
    model: str,
    first: str,
    answer: Answer,
    include_usage: bool,
    stopping: anyio.Event,
) -> AsyncIterator[dict]:
    """The chunks of a streamed answer: the role first, then the text, then the finish
    reason (with the ``rag`` field) and, if asked, the usage; a client that leaves
    cancels this generator, which stops the model. A server shutting down ends the
    stream with an error event, so the client knows the answer is cut short."""
    yield {"data": protocol.chunk(call, model, {"role": "assistant", "content": ""})}
    try:
        if first:
            yield {"data": protocol.chunk(call, model, {"content": first})}
        async for delta in _until(answer.text, stopping):
            yield {"data": protocol.chunk(call, model, {"content": delta})}
    except _ShuttingDown:
        yield {"data": json.dumps(SHUTTING_DOWN.body())}
        return
    except ModelUnavailable as exc:
        # Too late for a status code: OpenAI sends the error as an event, the SDK raises it.
        yield {"data": json.dumps(unavailable(str(exc)).body())}
        return
    except Exception as exc:
        # a cut-off answer for a whole one
        failed = ApiError(500, f"The answer broke off: {type(exc).__name__}: {exc}", None)
        yield {"data": json.dumps(failed.body())}
        return
    yield {"data": protocol.chunk(call, model, {}, answer.finish_reason, extra=_extra(answer))}
    if include_usage:
        used = protocol.usage(answer.prompt_tokens, answer.completion_tokens)
        yield {"data": protocol.chunk(call, model, None, used=used)}
    yield {"data": "[DONE]"}


class _ShuttingDown(Exception):
    pass


async def _until(stream: AsyncIterator[str], stopping: anyio.Event) -> AsyncIterator[str]:
    """The deltas of ``stream`` until ``stopping`` is set: then the delta awaited is
    given up, the stream closed (which stops the model) and ``_ShuttingDown`` raised."""
    stop = asyncio.ensure_future(stopping.wait())
    step: asyncio.Future[str | None] | None = None
    try:
        while True:
            step = asyncio.ensure_future(_next(stream))
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                raise _ShuttingDown
            delta = step.result()
            if delta is None:
                return
            yield delta
    finally:
        stop.cancel()
        if step is not None and not step.done():
            step.cancel()  # the stream cannot be closed while a step of it runs
            await asyncio.wait({step})
        await aclose(stream)


async def _next(stream: AsyncIterator[str]) -> str | None:
    return await anext(stream, None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return ApiError(
        exc.status_code, f"{request.method} {request.url.path}: {exc.detail}.", code
    ).response()


async def _server_error(request: Request, exc: Exception) -> Response:
    return ApiError(500, f"The server failed: {type(exc).__name__}: {exc}", None).response()
