"""A chat model behind any OpenAI-compatible HTTP server.

Foundry Local, Ollama, LM Studio, llama.cpp's server, vLLM and cloud endpoints
all speak this API. Failures before the first token are retried (a server that
is still starting); once text has streamed, a retry would repeat it, so none.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Sequence
from typing import TypedDict, cast
from urllib.parse import urlparse

import httpx
import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from rag.errors import ModelUnavailable
from rag.hosts import is_ip
from rag.models.base import Message, estimate_tokens, frequency_penalty


class Penalty(TypedDict, total=False):
    """The request fields that ask a server for a repetition penalty (see ``_penalty``)."""

    extra_body: dict[str, float]
    frequency_penalty: float


def on_host(url: str, hosts: Sequence[str]) -> bool:
    """Whether the server runs on one of ``hosts`` (those trusted with private text)."""
    host = (urlparse(url).hostname or "").lower()
    trusted = {h.lower().strip("[]") for h in hosts}
    if host in trusted:
        return True
    try:  # 127.0.0.1 and 127.000.000.001 are the same host
        return any(
            ipaddress.ip_address(host) == ipaddress.ip_address(t) for t in trusted if is_ip(t)
        )
    except ValueError:
        return False


def server_slots(base_url: str, api_key: str | None = None) -> int | None:
    """How many answers the server gives at once, where it says: llama.cpp's server
    lists its slots (``--parallel``) at ``/props`` (asked with the key, which it wants
    there too when it has one)."""
    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.get(f"{root}/props", timeout=3, headers=headers)
        return slots_in(reply.json()) if reply.is_success else None
    except (httpx.HTTPError, ValueError):
        return None


def slots_in(props: object) -> int | None:
    """The slot count in a ``/props`` reply: llama.cpp's ``total_slots``, at the top
    level of the object (tests/recorded/llama-server-props.json is a real one)."""
    slots = props.get("total_slots") if isinstance(props, dict) else None
    wanted = isinstance(slots, int) and not isinstance(slots, bool) and slots > 0
    return slots if wanted else None


class OpenAICompatibleChat:
    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        context_window: int = 4096,
        retries: int = 2,
        name: str | None = None,
        local_hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
        parallel: int = 1,
    ) -> None:
        self.model = model
        self.parallel = parallel  # answers at once (rag/models/queue.py)
        self.base_url = base_url
        self.name = name or f"{model} @ {base_url}"
        self.context_window = context_window
        self.local = on_host(base_url, local_hosts)
        self._retries = retries
        # Local servers take no key, but the client insists on one.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        response = await self._open(
            messages, max_tokens, temperature, self._penalty(repetition_penalty)
        )
        try:
            async for event in response:
                delta = event.choices[0].delta.content if event.choices else None
                if delta:
                    yield delta
        except openai.OpenAIError as exc:
            raise ModelUnavailable(
                f"The model server at {self.base_url} stopped in the middle of the answer: {exc}"
            ) from exc
        finally:
            await response.close()  # tells the server to stop generating

    def _penalty(self, repetition_penalty: float | None) -> Penalty:
        """How to ask this server for a repetition penalty.

        Servers on this machine (llama.cpp's llama-server, llama-cpp-python, LM Studio,
        Ollama, vLLM) take the multiplicative penalty as an extra field: llama.cpp and
        LM Studio read ``repeat_penalty``, vLLM ``repetition_penalty``, and each ignores
        the other's. A cloud API rejects unknown fields, so it gets OpenAI's own
        ``frequency_penalty`` instead."""
        if repetition_penalty is None:
            return {}
        if self.local:
            return {
                "extra_body": {
                    "repeat_penalty": repetition_penalty,
                    "repetition_penalty": repetition_penalty,
                }
            }
        additive = frequency_penalty(repetition_penalty)
        return {"frequency_penalty": additive} if additive else {}  # 0 is the API's default

    async def _open(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        penalty: Penalty,
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        for attempt in range(self._retries + 1):
            try:
                return await self._client.chat.completions.create(
                    model=self.model,
                    # {role, content} with the roles the API knows: its own message types
                    messages=cast("list[ChatCompletionMessageParam]", list(messages)),
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stream=True,
                    **penalty,
                )
            except (openai.APIConnectionError, openai.InternalServerError) as exc:
                if attempt == self._retries:
                    raise self._unreachable(exc) from exc
                await asyncio.sleep(0.5 * 2**attempt)
            except openai.AuthenticationError as exc:
                raise ModelUnavailable(
                    f"The server at {self.base_url} rejected the API key: set RAG_LLM_API_KEY."
                ) from exc
            except openai.NotFoundError as exc:
                raise ModelUnavailable(await self._unknown_model()) from exc
            except openai.APIStatusError as exc:
                raise ModelUnavailable(
                    f"The server at {self.base_url} refused the request ({exc.status_code}): "
                    f"{exc.message}"
                ) from exc
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> ModelUnavailable:
        if isinstance(exc, openai.InternalServerError):
            return ModelUnavailable(
                f"The model server at {self.base_url} failed ({exc.status_code}): {exc.message}"
            )
        kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "is not reachable"
        return ModelUnavailable(
            f"The model server at {self.base_url} {kind}: start it (for example "
            "`foundry model run phi-4-mini`, `ollama serve` or `llama_cpp.server`) "
            "or choose another model with RAG_LLM."
        )

    async def _unknown_model(self) -> str:
        try:
            served = [m.id async for m in self._client.models.list()]
        except openai.OpenAIError:
            served = []
        listing = ", ".join(served) if served else "none that it lists"
        return (
            f"The server at {self.base_url} has no model {self.model!r}; it serves: {listing}. "
            "Set RAG_LLM=openai:NAME@URL with one of those."
        )
