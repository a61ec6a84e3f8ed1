"""Helpers for the security tests: a listener that records every request it gets (the
"remote" host a document points at), a scripted model, a Socket.IO client, another
user's chat with a private file."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from rag.config import Settings
from rag.conversations import uploads
from rag.conversations.chat_store import ChatStore

ROOT = Path(__file__).resolve().parent.parent

# A document whose Markdown points the browser at the listener in every way it knows.
IMAGE_DOC = """# Lighthouse keeping {listener_img}

The Varna lighthouse keeper winds the clockwork lens every 4 hours and logs the weather.

![Beacon photo]({listener}/inline.png)

Reference style: ![Beacon map][map]

<img src="{listener}/html.png">

[map]: {listener}/reference.png
"""


def image_doc(listener: str) -> str:
    return IMAGE_DOC.format(listener=listener, listener_img=f"![logo]({listener}/heading.png)")


class Listener(ThreadingHTTPServer):
    """A web server on another port that remembers every path asked of it."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _ListenerHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ListenerHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def login_cookie(url: str, headers: dict[str, str] | None = None) -> str:
    """The cookie of a header login, as the web page gets it: on loopback without
    RAG_AUTH everyone is the one local user (chat history needs a user)."""
    logged = httpx.post(f"{url}/auth/header", headers=headers or {})
    logged.raise_for_status()
    return "; ".join(f"{k}={v}" for k, v in logged.cookies.items())


class Refused(Exception):
    """The app would not open a Socket.IO session."""


def socketio_welcome(
    url: str, origin: str | None, transport: str, cookie: str | None = None, timeout: float = 60
) -> str:
    """Opens the app's Socket.IO session as its web page does (engine.io v4 spoken by hand,
    so the test controls every header); returns the first message the app sends (its
    welcome). Raises ``Refused`` when the handshake or the connect is refused."""
    headers = {"Origin": origin} if origin else {}
    if cookie:
        headers["Cookie"] = cookie
    auth = json.dumps({"sessionId": str(uuid.uuid4()), "clientType": "webapp"})
    talk = _websocket if transport == "websocket" else _polling
    for event, data in talk(url, headers, auth, timeout):
        if event in ("new_message", "stream_start") and data.get("output"):
            return data["output"]
    raise AssertionError(f"connected but no message within {timeout} s")


def socketio_chat(
    url: str,
    cookie: str,
    question: str,
    *,
    thread_id: str | None = None,
    session_id: str | None = None,
    before_asking: Callable[[], object] = lambda: None,
    timeout: float = 300,
    on_event: Callable[[str, object], object] = lambda event, data: None,
) -> list[tuple[str, object]]:
    """One question in a new chat of the app over Socket.IO (a WebSocket), as its web page
    asks it, with the chat id a client may send (``thread_id``, meant to resume a chat);
    calls ``before_asking`` once welcomed, and returns every event the app sent until it
    had answered (``first_reply`` picks what it said); ``on_event`` sees each as it comes."""
    from websockets.sync.client import connect

    auth = {"sessionId": session_id or str(uuid.uuid4()), "clientType": "webapp"}
    if thread_id is not None:
        auth["threadId"] = thread_id
    message = {
        "id": str(uuid.uuid4()),
        "threadId": "",
        "type": "user_message",
        "name": "User",
        "output": question,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
    ws_url = url.replace("http", "ws", 1) + "/ws/socket.io/?EIO=4&transport=websocket"
    seen: list[tuple[str, object]] = []
    asked = False
    with connect(ws_url, origin=url, additional_headers={"Cookie": cookie}) as ws:
        assert ws.recv(timeout=10).startswith("0")  # engine.io open
        ws.send("40" + json.dumps(auth))
        ws.send('42["connection_successful"]')
        deadline = time.monotonic() + timeout

        def packets():
            while time.monotonic() < deadline:
                try:
                    yield ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    return

        for event, data in _events(packets(), lambda: ws.send("3")):
            seen.append((event, data))
            on_event(event, data)
            data = data if isinstance(data, dict) else {}
            if not asked and event == "new_message" and data.get("output"):  # the welcome
                before_asking()
                payload = {"message": message, "fileReferences": []}
                ws.send("42" + json.dumps(["client_message", payload]))
                asked = True
            elif event == "update_message" and data.get("name") == "on_message":
                return seen  # the step Chainlit wraps the answer in has ended
    raise AssertionError(f"no answer within {timeout} s; events: {seen}")


def first_reply(events: list[tuple[str, object]]) -> str:
    """What the app said first after the question (an error, a retrieval step, an answer),
    out of ``socketio_chat``'s events."""
    welcomed = False
    for event, data in events:
        if not isinstance(data, dict) or not data.get("output"):
            continue
        if not welcomed:
            welcomed = event == "new_message"
        elif event in ("new_message", "update_message") and data.get("type") != "user_message":
            return data["output"]
    raise AssertionError(f"the app said nothing after the question; events: {events}")


async def alice_chat(index: Path, embedder, tmp: Path, secret: str) -> str:
    """Alice's stored chat in the chat store of ``index``, with a file only she may read
    (``pins.md``, which holds ``secret``): its id."""
    settings = Settings(index=index)
    store = await ChatStore.connect(settings)
    try:
        alice = await store.ensure_user("alice")
        chat = str(uuid.uuid4())
        await store.upsert_thread(chat, user_id=alice["id"], name="Alice's notes")
        pins = tmp / "pins.md"
        pins.write_text(f"# Locker\n\nAlice's locker code is {secret}; her badge is B-7731.")
        own = uploads.create(settings, embedder, store.files_dir(chat))
        try:
            assert "1 passage" in uploads.add(own, str(pins), "pins.md")
        finally:
            own.library.store.close()
    finally:
        await store.close()
    return chat


def _events(packets, on_ping):
    """Socket.IO events out of engine.io packets; raises Refused on a connect error."""
    for packet in packets:
        if packet == "2":
            on_ping()
        elif packet.startswith("44"):
            raise Refused(packet)
        elif packet.startswith("42"):
            event, *args = json.loads(packet[2:])
            yield event, (args[0] if args else None)


def _websocket(url, headers, auth, timeout):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    origin = headers.pop("Origin", None)
    ws_url = url.replace("http", "ws", 1) + "/ws/socket.io/?EIO=4&transport=websocket"
    try:
        ws = connect(ws_url, origin=origin, additional_headers=headers, open_timeout=10)
    except InvalidStatus as exc:
        raise Refused(str(exc)) from exc
    with ws:
        assert ws.recv(timeout=10).startswith("0")  # engine.io open
        ws.send("40" + auth)
        ws.send('42["connection_successful"]')
        deadline = time.monotonic() + timeout

        def packets():
            while time.monotonic() < deadline:
                try:
                    yield ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    return

        yield from _events(packets(), lambda: ws.send("3"))


def _polling(url, headers, auth, timeout):
    base = url + "/ws/socket.io/?EIO=4&transport=polling"
    with httpx.Client(headers=headers, timeout=30) as client:
        opened = client.get(base)
        if opened.status_code != 200:
            raise Refused(f"{opened.status_code} {opened.text}")
        sid = json.loads(opened.text[1:])["sid"]
        session = f"{base}&sid={sid}"
        client.post(session, content="40" + auth)
        client.post(session, content='42["connection_successful"]')
        deadline = time.monotonic() + timeout

        def packets():
            while time.monotonic() < deadline:
                reply = client.get(session)
                if reply.status_code != 200:
                    raise Refused(f"{reply.status_code} {reply.text}")
                yield from reply.text.split("\x1e")

        yield from _events(packets(), lambda: client.post(session, content="3"))


class ScriptedModel(ThreadingHTTPServer):
    """An OpenAI-compatible chat server on loopback that streams a fixed answer: the one
    model output the tests must control (the tiny local model cannot be made to write a
    given image link), so it stands in at the model boundary."""

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ScriptedHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for text in self.server.parts:
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "scripted",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args) -> None:
        pass
