"""The request and response shapes of OpenAI's chat, embeddings and models endpoints.

Requests are checked here, so a bad value is a 400 that names the parameter;
fields we do not use (``user``, ``metadata``, ``tools`` ...) are accepted and ignored,
as clients send them freely. Responses are built field for field as OpenAI's, so
the SDK's own types validate them.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rag.web.openai_api.errors import bad_request

OWNER = "local-rag-chat"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Part(_Lenient):
    type: str
    text: str | None = None


class InMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[Part] | None = None

    def text(self) -> str:
        """Plain text of the message; content parts other than text cannot be read."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(p.type != "text" for p in self.content):
            raise bad_request(
                "Only text content is supported (no images, audio or files).", "messages"
            )
        return "".join(p.text or "" for p in self.content)


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatRequest(_Lenient):
    model: str
    messages: list[InMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s for s in stops)):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])

    @property
    def answer_tokens(self) -> int | None:
        # max_tokens is the older name; both mean the longest answer.
        return self.max_completion_tokens or self.max_tokens

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class EmbeddingRequest(_Lenient):
    model: str
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


T = TypeVar("T", bound=BaseModel)


def parse(kind: type[T], raw: bytes) -> T:
    """The request, or a 400 that says which parameter is wrong and why.

    pydantic-core's parser (Rust, about twice as fast as ``json``) stops at 200 levels
    of nesting; Python's recurses until RecursionError, which was a 500."""
    try:
        body = pydantic_core.from_json(raw)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise bad_request(
                "The request body is nested too deeply (at most 200 levels).", code="invalid_json"
            ) from None
        raise bad_request("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
        raise bad_request(f"Invalid value for {param!r}: {first['msg']}.", param, code) from None


def new_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(
    call: str, model: str, text: str, finish: str, used: dict, extra: dict[str, Any]
) -> dict:
    return {
        "id": call,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "logprobs": None,
                "message": {"role": "assistant", "content": text, "refusal": None},
            }
        ],
        "usage": used,
        **extra,
    }


def chunk(
    call: str,
    model: str,
    delta: dict | None,
    finish: str | None = None,
    used: dict | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """One server-sent event's data; ``delta=None`` makes the usage chunk (no choices)."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    )
    body = {
        "id": call,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": used,
        **(extra or {}),
    }
    return json.dumps(body)


def model_entry(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


def embeddings(model: str, vectors: Sequence[Sequence[float]], encoding: str, tokens: int) -> dict:
    def encoded(vector: Sequence[float]) -> list[float] | str:
        if encoding == "float":
            return list(vector)
        # OpenAI's base64 form: little-endian float32, which the SDK decodes with numpy.
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")

    return {
        "object": "list",
        "model": model,
        "data": [
            {"object": "embedding", "index": i, "embedding": encoded(v)}
            for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
