"""An OpenAI-compatible HTTP API over the same pipeline the app uses: ``rag serve``.

Two models are offered. ``local-rag-chat`` answers from the indexed documents
(the last user message is the question, earlier messages are the history) and
ends with its sources. The chat model's own id passes the messages straight to
it, so other tools on this machine can use the app's local model.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rag import chat, security
from rag.config import Settings
from rag.errors import ModelUnavailable
from rag.retrieval import Library
from rag.routing import ModelPool

RAG_MODEL = "local-rag-chat"


def model_id(name: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "code": code}}, status_code=status)


def _chunk(call: str, model: str, delta: dict, finish: str | None = None) -> str:
    body = {"id": call, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


async def _sse(model: str, first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    call = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    yield _chunk(call, model, {"role": "assistant", "content": first})
    # A client that disconnects cancels this generator, which stops the model.
    async for delta in rest:
        yield _chunk(call, model, {"content": delta})
    yield _chunk(call, model, {}, finish="stop")
    yield "data: [DONE]\n\n"


def _complete(model: str, text: str) -> JSONResponse:
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
    })


def create_app(settings: Settings, library: Library, pool: ModelPool,
               api_key: str | None = None) -> Starlette:
    served = model_id(pool.load(settings.llm).name)

    def authorised(request: Request) -> bool:
        return not api_key or security.key_matches(request.headers.get("authorization"), api_key)

    async def models(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "local-rag-chat"} for m in (RAG_MODEL, served)
        ]})

    async def completions(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "The request body is not valid JSON.", "invalid_json")
        wanted, messages = body.get("model"), body.get("messages") or []
        if wanted not in (RAG_MODEL, served):
            return _error(404, f"The model {wanted!r} does not exist.", "model_not_found")
        if not messages or messages[-1].get("role") != "user":
            return _error(400, "The last message must come from the user.", "invalid_messages")
        try:
            options = settings.with_overrides(
                max_answer_tokens=body.get("max_tokens"), temperature=body.get("temperature"))
        except ValidationError as exc:
            return _error(400, str(exc), "invalid_value")
        stream = (_documents if wanted == RAG_MODEL else _direct)(messages, options)
        try:
            first = await anext(stream, "")
        except ModelUnavailable as exc:
            return _error(503, str(exc), "model_unavailable")
        if body.get("stream"):
            return StreamingResponse(_sse(wanted, first, stream), media_type="text/event-stream")
        try:
            return _complete(wanted, first + "".join([d async for d in stream]))
        except ModelUnavailable as exc:
            return _error(503, str(exc), "model_unavailable")

    async def _direct(messages: list[dict], options: Settings) -> AsyncIterator[str]:
        model = await asyncio.to_thread(pool.load, options.llm)
        async for delta in model.stream(messages, max_tokens=options.max_answer_tokens,
                                        temperature=options.temperature):
            yield delta

    async def _documents(messages: list[dict], options: Settings) -> AsyncIterator[str]:
        history = [m for m in messages[:-1] if m.get("role") in ("user", "assistant")]
        turn = await chat.prepare(messages[-1]["content"], library, options, history)
        async for delta in chat.stream_answer(turn, pool, options):
            yield delta
        _, shown = turn.shown_sources(uncited=len(turn.context))
        if shown:
            yield "\n\nSources: " + "; ".join(f"[{n}] {h.chunk.label()}" for n, h in shown)

    return Starlette(routes=[
        Route("/v1/models", models),
        Route("/v1/chat/completions", completions, methods=["POST"]),
    ])
