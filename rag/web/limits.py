"""What one client may cost ``rag serve`` and the app: request size, time and count (#21).

Without limits, one client could send a body of any size (held whole in memory), keep a
connection open forever by sending its headers or body a byte at a time, or open enough
idle connections to use up the process's open files, after which every request fails.

- ``RequestLimits`` (ASGI middleware, both servers): a body larger than the limit is
  answered 413 before it is read whole (its Content-Length first, then the bytes counted
  as they come); a body that does not arrive within the deadline is answered 408.
- ``server_options``: uvicorn's own limits, and a connection that has not sent a whole
  request head within the deadline (or sends an endless one) is closed. uvicorn closes
  idle keep-alive connections, but never one that connected and then sent nothing or
  trickled its headers.
- ``raise_open_file_limit``: the soft limit of open files up to the hard one, so the cap
  on connections is reached long before the process runs out of files.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from rag.config import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_HEAD_BYTES = 64 * 1024  # a request line and headers; browsers send a few KB
KEEP_ALIVE_SECONDS = 5  # an idle connection between requests (uvicorn's default)
SHUTDOWN_SECONDS = 5  # after SIGTERM, the most a request in flight is waited for
FILES_RESERVED = 128  # open files kept for the index, the models and the logs


def body_limit(settings: Settings, uploads: bool = False) -> int:
    """Bytes a request body may have; the app's uploads may be as large as a file may."""
    mb = settings.max_request_mb
    if uploads:  # multipart adds a little around the file itself
        mb = max(mb, settings.max_file_mb + 1)
    return int(mb * 2**20)


class RequestLimits:
    """ASGI middleware: 413 for a body over ``max_bytes``, 408 for one that has not arrived
    within ``timeout`` seconds of its headers; either way the connection is closed after."""

    def __init__(self, app: Any, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (_declared_length(scope) or 0) > self.max_bytes:
            await _refuse(send, 413, self._too_large())
            return
        exchange = _Exchange(self, receive, send)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if not exchange.refused:  # after our answer, the app's failure to read is expected
                raise

    def _too_large(self) -> str:
        return (
            f"The request body is larger than this server accepts "
            f"({self.max_bytes / 2**20:g} MB, RAG_MAX_REQUEST_MB)."
        )

    def _too_slow(self) -> str:
        return (
            f"The request body did not arrive within {self.timeout:g} s "
            "(RAG_REQUEST_TIMEOUT): the connection is closed."
        )


class _Exchange:
    """One request's receive and send, watched: the body is counted and timed until it
    is complete; once refused, the app reads a disconnect and what it sends is dropped."""

    def __init__(self, limits: RequestLimits, receive: Receive, send: Send) -> None:
        self.limits, self._receive, self._send = limits, receive, send
        self.deadline = asyncio.get_running_loop().time() + limits.timeout
        self.received = 0
        self.body_complete = False
        self.started = False  # the app began its answer
        self.refused = False  # we answered instead

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self.body_complete:  # e.g. a stream waiting for the client to leave: no deadline
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            return await self._refuse(408, self.limits._too_slow())
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limits.max_bytes:
                return await self._refuse(413, self.limits._too_large())
            self.body_complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        self.started = True
        await self._send(message)

    async def _refuse(self, status: int, reason: str) -> Message:
        if not self.started:
            await _refuse(self._send, status, reason)
        self.refused = True
        return {"type": "http.disconnect"}


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP parser refuses it before the app sees it
    return None


async def _refuse(send: Send, status: int, reason: str) -> None:
    """An answer in OpenAI's error shape (what ``rag serve`` clients read), and the
    connection closed after it, so the rest of the body is never read."""
    code = {408: "request_timeout", 413: "request_too_large"}.get(status)
    error = {"message": reason, "type": "invalid_request_error", "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- the connection, before the app sees a request ----------------------------------


def deadline_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection whose request head (the request line
    and headers) is not complete ``seconds`` after it connected or after its last answer,
    or grows beyond MAX_HEAD_BYTES."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeadDeadline(base):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._await_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_head()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting():  # still no complete head after these bytes
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self.transport.close()

        def _await_head(self) -> None:
            # uvicorn makes a new cycle once a request's head is complete.
            self._before = self.cycle
            self._head_bytes = 0
            self.loop.call_later(seconds, self._expire, self._before)

        def _waiting(self) -> bool:
            """No request since the mark, and none in progress (a pipelined one may be);
            a connection upgraded to a WebSocket has left uvicorn's HTTP connections."""
            before = self._before
            return (
                self.cycle is before
                and (before is None or before.response_complete)
                and self in self.connections
                and not self.transport.is_closing()
            )

        def _expire(self, before: Any) -> None:
            if self._before is before and self._waiting():
                self.transport.close()

    return HeadDeadline


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config arguments that bound what clients can hold."""
    return {
        "http": deadline_protocol(settings.request_timeout),
        "limit_concurrency": connection_cap(settings),  # beyond it: 503
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "timeout_graceful_shutdown": SHUTDOWN_SECONDS,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,  # where h11 parses
    }


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # kept as it was: the connection cap still applies
    return soft


def connection_cap(settings: Settings) -> int:
    """RAG_MAX_CONNECTIONS, or fewer where the open-file limit would be reached first."""
    soft = raise_open_file_limit()
    if soft == resource.RLIM_INFINITY:
        return settings.max_connections
    return max(1, min(settings.max_connections, soft - FILES_RESERVED))


def limit_app_server(server: Any, settings: Settings) -> None:
    """The same limits for the Chainlit app: the middleware on its FastAPI app, and
    ``server_options`` for the uvicorn server ``chainlit run`` makes after importing the
    app (it takes no such options itself), through uvicorn.Config."""
    import uvicorn

    if not any(m.cls is RequestLimits for m in server.user_middleware):
        server.add_middleware(
            RequestLimits,
            max_bytes=body_limit(settings, uploads=True),
            timeout=settings.request_timeout,
        )
    if getattr(uvicorn.Config, "limited", False):
        return
    options = server_options(settings)

    class LimitedConfig(uvicorn.Config):
        limited = True

        def __init__(self, app: Any, **kwargs: Any) -> None:
            super().__init__(app, **{**options, **kwargs})

    uvicorn.Config = LimitedConfig  # type: ignore[misc, assignment]
