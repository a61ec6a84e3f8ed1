"""Only the app's own pages talk to the app: Host and Origin checks, a Content-Security-Policy,
and the API key of ``rag serve``.

The guard is plain ASGI so that one check covers HTTP and WebSocket alike. That matters for
Chainlit: it creates its Socket.IO server with ``cors_allowed_origins=[]``, which makes
engine.io skip its own Origin check, and its CORS setting governs HTTP only. See SECURITY.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import socket
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rag.config import Settings
from rag.errors import RagError
from rag.hosts import host_name, is_ip, is_loopback

if TYPE_CHECKING:  # the types only: Starlette loads with the app or server that uses it
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(settings: Settings, bind_host: str) -> frozenset[str] | None:
    """Host names a request may address: localhost names, the bound address and
    ``RAG_ALLOWED_HOSTS``. ``None`` means any (``RAG_ALLOWED_HOSTS=*``)."""
    if "*" in settings.allowed_hosts:
        return None
    hosts = {*LOOPBACK_NAMES, *(host_name(h) for h in settings.allowed_hosts)}
    bind = host_name(bind_host) if bind_host else ""
    if bind in WILDCARD_BINDS:
        # Bound to every interface: this machine's own names are its addresses too.
        hosts |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    else:
        hosts.add(bind)
    return frozenset(hosts)


def host_allowed(host_header: str | None, hosts: frozenset[str] | None) -> bool:
    if hosts is None:
        return True
    if not host_header:
        return False
    name = host_name(host_header)
    # DNS rebinding needs a name the attacker controls; an IP literal cannot be
    # re-pointed, so addressing the machine by its IP is always safe.
    return name in hosts or is_ip(name)


def origin_allowed(origin: str | None, host_header: str | None, origins: Iterable[str]) -> bool:
    """No Origin (not a browser, or a same-origin GET) passes; otherwise it must be the
    app's own origin (what the browser addressed) or a listed one."""
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in {o.strip().lower().rstrip("/") for o in origins}:
        return True
    if origin == "null" or not host_header:
        return False
    return urlsplit(origin).netloc == host_header.strip().lower()


def content_security_policy(inline_scripts: Iterable[str] = ()) -> str:
    """Images, scripts, frames and connections from the app itself only. ``data:`` and
    ``blob:`` are kept where Chainlit makes them (avatars, uploads' previews, audio)."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in inline_scripts
    )
    return "; ".join(
        [
            "default-src 'self'",
            # WebAssembly compiles only with 'wasm-unsafe-eval' (ONNX Runtime Web, #23);
            # it allows no eval() of JavaScript text.
            f"script-src 'self'{hashes} 'wasm-unsafe-eval'",
            "style-src 'self' 'unsafe-inline'",  # Chainlit's components set inline styles
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "media-src 'self' data: blob:",
            "connect-src 'self'",
            "frame-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    )


_INLINE_SCRIPT = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE
)


def inline_scripts(html: str) -> list[str]:
    """The bodies of the inline scripts of a page we serve ourselves, to allow by hash."""
    return _INLINE_SCRIPT.findall(html)


class HostOriginGuard:
    """ASGI middleware: refuses requests to a foreign Host or from a foreign Origin,
    HTTP and WebSocket alike, and adds a Content-Security-Policy to every HTTP answer."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: frozenset[str] | None,
        origins: Iterable[str] = (),
        csp: str | None = None,
    ) -> None:
        self.app, self.hosts, self.origins, self.csp = app, hosts, tuple(origins), csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        host = headers.get("host")
        if not host_allowed(host, self.hosts):
            await _refuse(scope, send, "This host name is not allowed (RAG_ALLOWED_HOSTS).")
            return
        if not origin_allowed(headers.get("origin"), host, self.origins):
            await _refuse(
                scope, send, "Requests from this origin are not allowed (RAG_ALLOWED_ORIGINS)."
            )
            return
        if scope["type"] == "http" and self.csp:
            send = self._with_csp(send)
        await self.app(scope, receive, send)

    def _with_csp(self, send: Send) -> Send:
        policy = (self.csp or "").encode()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"content-security-policy"
                ]
                message = {**message, "headers": [*kept, (b"content-security-policy", policy)]}
            await send(message)

        return sending


async def _refuse(scope: Scope, send: Send, reason: str, status: int = 403) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting makes the server answer the handshake with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": reason})
        return
    body = reason.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- rag serve: the API key ---


def guard(server: Starlette, settings: Settings, bind_host: str, page_html: str) -> None:
    """Put the Host/Origin check and the CSP in front of an ASGI app (once): for the
    browser app, ``page_html`` is its page, whose inline scripts the CSP allows."""
    if not any(m.cls is HostOriginGuard for m in server.user_middleware):
        server.add_middleware(
            HostOriginGuard,
            hosts=allowed_hosts(settings, bind_host),
            origins=settings.allowed_origins,
            csp=content_security_policy(inline_scripts(page_html)),
        )


def key_matches(authorization: str | None, key: str) -> bool:
    """The bearer key compared in constant time: the reply's timing tells nothing about
    how much of a guess was right."""
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {key}".encode())


def read_key_file(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise RagError(f"Cannot read the API key file {path}: {exc.strerror}.") from exc
    if not key:
        raise RagError(f"The API key file {path} is empty.")
    return key


MIN_KEY = 32  # characters: guessing a key this long is hopeless, even unthrottled


def serve_key(settings: Settings, key_file: Path | None, given: str | None) -> str | None:
    """The key ``rag serve`` requires: from a file, the command line, or RAG_SERVE_API_KEY;
    one shorter than 32 characters is refused."""
    if key_file is not None:
        key: str | None = read_key_file(key_file)
    elif given:
        key = given
    else:
        key = settings.serve_api_key.get_secret_value() if settings.serve_api_key else None
    if key and len(key) < MIN_KEY:
        raise RagError(
            f"The API key has {len(key)} characters: use one of at least {MIN_KEY} "
            "characters, made with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key


def check_bind(host: str, key: str | None, insecure_no_key: bool) -> None:
    """Beyond loopback, anyone on the network could ask about the documents: a key is needed."""
    if key or insecure_no_key or is_loopback(host):
        return
    raise RagError(
        f"Refusing to serve on {host} without an API key: set RAG_SERVE_API_KEY or "
        "--api-key-file, or pass --insecure-no-key to allow anyone on the network."
    )


# --- reverse proxies: who is asking, and over what ---

_CLIENT: ContextVar[str] = ContextVar("client_address", default="")


def client_address() -> str:
    """The address of the client whose request is being answered (set by ``ProxyGate``)."""
    return _CLIENT.get()


class TrustedProxies:
    """``RAG_TRUSTED_PROXIES``: the only peers whose word about the client is believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries]

    def __contains__(self, address: object) -> bool:
        try:
            ip = ipaddress.ip_address(host_name(str(address)))
        except ValueError:
            return False
        ip = getattr(ip, "ipv4_mapped", None) or ip
        return any(ip in net for net in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client behind a chain of trusted proxies: in X-Forwarded-For, read from
        the right (each proxy appends), the first address that is not a trusted proxy."""
        if peer not in self:
            return peer
        hops = [host_name(h) for value in forwarded_for for h in value.split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0] if hops else peer


class ProxyGate:
    """ASGI middleware: the client's address and scheme as a trusted proxy forwards them
    (anyone else's X-Forwarded-* is ignored), the login header only from a trusted proxy
    and only once, and cookies marked Secure when the browser came over HTTPS."""

    def __init__(
        self, app: ASGIApp, proxies: TrustedProxies, login_header: str | None = None
    ) -> None:
        self.app, self.proxies = app, proxies
        self.login_header = login_header.lower().encode("latin-1") if login_header else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer = (scope.get("client") or ("", 0))[0]
        trusted = peer in self.proxies
        headers = scope.get("headers", [])
        if self.login_header:
            copies = sum(1 for k, _ in headers if k.lower() == self.login_header)
            name = self.login_header.decode("latin-1")
            if copies and not trusted:
                reason = f"The {name} header is only believed from RAG_TRUSTED_PROXIES."
                await _refuse(scope, send, reason)
                return
            if copies > 1:
                await _refuse(scope, send, f"The {name} header came twice.", 400)
                return
        if trusted:
            scope = _forwarded(scope, self.proxies, peer)
        address = _CLIENT.set((scope.get("client") or ("", 0))[0])
        try:
            if scope.get("scheme") == "https":
                send = _secure_cookies(send)
            await self.app(scope, receive, send)
        finally:
            _CLIENT.reset(address)


def _forwarded(scope: Scope, proxies: TrustedProxies, peer: str) -> Scope:
    """The scope as the client sees it, from a trusted proxy's X-Forwarded-For/-Proto."""
    values: dict[bytes, list[str]] = {b"x-forwarded-for": [], b"x-forwarded-proto": []}
    for key, value in scope.get("headers", []):
        if key.lower() in values:
            values[key.lower()].append(value.decode("latin-1"))
    scope = dict(scope)
    if chain := values[b"x-forwarded-for"]:
        scope["client"] = (proxies.client(peer, chain), 0)
    protos = values[b"x-forwarded-proto"]
    proto = protos[-1].split(",")[0].strip().lower() if protos else ""  # the client's hop
    if proto in ("http", "https"):
        scope["scheme"] = proto.replace("http", "ws") if scope["type"] == "websocket" else proto
    return scope


def _secure_cookies(send: Send) -> Send:
    """Adds Secure to every cookie set: over HTTPS a login cookie never goes out in clear."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v + b"; Secure")
                if k.lower() == b"set-cookie"
                and b"secure" not in [a.strip().lower() for a in v.split(b";")[1:]]
                else (k, v)
                for k, v in message.get("headers", [])
            ]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def gate(server: Starlette, settings: Settings, login_header: str | None) -> None:
    """Put ``ProxyGate`` in front of an ASGI app (once)."""
    if not any(m.cls is ProxyGate for m in server.user_middleware):
        server.add_middleware(
            ProxyGate, proxies=TrustedProxies(settings.trusted_proxies), login_header=login_header
        )
