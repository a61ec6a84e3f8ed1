"""Hostile clients against ``rag serve`` (#21): each test is an attack that succeeded on the
server before its defence (SECURITY.md lists them).

One real ``rag serve`` process with small limits answers them all; its chat model is a
scripted stand-in on loopback (a model that stalls on demand cannot be made of a real
one), and its index holds a real document with a Markdown image in its heading.
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from openai.types.chat import ChatCompletion
from openai.types.shared import ErrorObject

from servers import ingest, start_rag_server
from support_security import image_doc

pytestmark = pytest.mark.integration  # one real `rag serve` process answers every test

MAX_BODY = 50_000  # bytes: RAG_MAX_REQUEST_MB below
MAX_QUESTION = 2000  # characters
DEADLINE = 60  # seconds any wait in these tests may last before it fails
LIMITS = {
    "RAG_MAX_REQUEST_MB": str(MAX_BODY / 2**20),
    "RAG_MAX_QUESTION_CHARS": str(MAX_QUESTION),
    "RAG_REQUEST_TIMEOUT": "1",
    "RAG_MAX_CONNECTIONS": "4",
    "RAG_LLM_CONCURRENCY": "8",  # the scripted model holds several streams at once
}


class Scripted(ThreadingHTTPServer):
    """An OpenAI-style model on loopback. It answers "The lighthouse [1]."; asked about a
    picture it answers with a Markdown image; asked to stall it sends one word and then
    holds the stream until released (or the test's deadline)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.stalled = threading.Semaphore(0)  # one count per stream now held
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ScriptedHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        asked = body["messages"][-1]["content"]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        if "stall" in asked:
            self._send("Half an")
            self.server.stalled.release()
            self.server.release.wait(DEADLINE)
        elif "picture" in asked:
            self._send("Here it is: ![map](http://127.0.0.1:9/leak.png?q=secret)")
            self._send(" and a ![second one](http://127.0.0.1:9/two.png) [1].")
        else:
            self._send("The lighthouse [1].")
        self.wfile.write(b"data: [DONE]\n\n")

    def _send(self, text: str) -> None:
        chunk = {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "scripted",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def model() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    (root / "docs").mkdir()
    (root / "docs" / "lighthouse.md").write_text(image_doc("http://127.0.0.1:9"))
    ingest(root / "docs", root / "index")
    return root / "index"


def serve(index: Path, model: Scripted) -> tuple:
    return start_rag_server(
        {"RAG_INDEX": str(index), "RAG_LLM": f"openai:m@{model.base}", **LIMITS}
    )


@pytest.fixture(scope="module")
def served(index, model) -> Iterator[tuple]:
    # Started with the usual soft limit of open files (the hard one is often far higher).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        proc, base = serve(index, model)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield proc, base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def api(served) -> str:
    return served[1]


def ask(question: str, **extra) -> dict:
    return {"model": "rag-library", "messages": [{"role": "user", "content": question}], **extra}


def stall(model_id: str) -> dict:
    """A streamed request the model holds: to the model itself, as the library would
    refuse a question about nothing it holds without asking the model."""
    return ask("Please stall.", model=model_id, stream=True)


@pytest.fixture
def stalling(model) -> Iterator[Scripted]:
    """The model, holding the streams it is asked to stall until the test ends."""
    model.release.clear()
    yield model
    model.release.set()
    while model.stalled.acquire(blocking=False):
        pass


def direct_model(api: str) -> str:
    return next(i for i in models(api) if i.startswith("m-"))


def error_of(response: httpx.Response, status: int) -> ErrorObject:
    assert response.status_code == status, response.text
    return ErrorObject.model_validate(response.json()["error"])


def raw_request(base: str, head: bytes, body: bytes = b"") -> socket.socket:
    """A connection to the server that has sent ``head`` (and ``body``) and nothing more."""
    url = httpx.URL(base)
    sock = socket.create_connection((url.host, url.port), timeout=DEADLINE)
    sock.sendall(head + body)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection; fails at the deadline."""
    got = b""
    with sock:
        while chunk := sock.recv(65536):  # socket.timeout (a failure) at the deadline
            got += chunk
    return got


# --- the body: its size, its shape -----------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_read(api):
    url = f"{api}/chat/completions"
    declared = error_of(httpx.post(url, content=b"x" * (MAX_BODY + 1), timeout=DEADLINE), 413)
    assert declared.code == "request_too_large" and "RAG_MAX_REQUEST_MB" in declared.message

    def chunked() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
        for _ in range(MAX_BODY // 1000 + 1):
            yield b'{"model": "rag-library", "input": "' + b"y" * 1000

    error_of(httpx.post(url, content=chunked(), timeout=DEADLINE), 413)
    # The head alone decides when it says too much: no body needs to follow.
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 90000000\r\n\r\n"
    )
    assert read_until_closed(raw_request(api, head)).startswith(b"HTTP/1.1 413 ")
    reply = httpx.post(url, json=ask("Who keeps the lighthouse?"), timeout=DEADLINE)
    assert reply.status_code == 200, reply.text  # and the server answers as before


def test_an_over_long_question_is_a_400_that_says_the_limit(api):
    too_long = "Who keeps the lighthouse? " * (MAX_QUESTION // 20)
    assert MAX_QUESTION < len(too_long) < MAX_BODY
    error = error_of(httpx.post(f"{api}/chat/completions", json=ask(too_long), timeout=60), 400)
    assert error.param == "messages" and "RAG_MAX_QUESTION_CHARS" in error.message
    direct = ask(too_long, model=direct_model(api))
    error_of(httpx.post(f"{api}/chat/completions", json=direct, timeout=DEADLINE), 400)


def test_deeply_nested_json_is_a_400_not_a_crash(api):
    nested = json.dumps(ask("Who keeps the lighthouse?"))[:-1] + ', "x": ' + "[" * 20000
    nested += "]" * 20000 + "}"
    assert len(nested) < MAX_BODY
    for path in ("/chat/completions", "/embeddings"):
        error = error_of(httpx.post(api + path, content=nested, timeout=DEADLINE), 400)
        assert error.code == "invalid_json" and "nested" in error.message


def models(api: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{api}/models", timeout=DEADLINE).json()["data"]]


# --- slow and many clients ---------------------------------------------------------------


def test_a_slow_client_is_closed(api):
    # Headers that never end (slowloris), then a body that never ends: both are cut off
    # after RAG_REQUEST_TIMEOUT, which is what lets a server outlive many of them.
    slow_head = raw_request(api, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert read_until_closed(slow_head) == b""
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    slow_body = raw_request(api, head, b'{"model": ')
    answer = read_until_closed(slow_body)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"RAG_REQUEST_TIMEOUT" in answer


def test_connections_beyond_the_cap_get_503_and_the_open_file_limit_is_raised(served, stalling):
    proc, api = served
    body = stall(direct_model(api))
    held = []
    try:
        for _ in range(6):  # RAG_MAX_CONNECTIONS=4: the fourth is one too many
            stream = httpx.stream("POST", f"{api}/chat/completions", json=body, timeout=60)
            held.append(stream)
            response = stream.__enter__()
            if response.status_code != 200:
                break
            assert stalling.stalled.acquire(timeout=DEADLINE)
        assert response.status_code == 503 and len(held) == 4
    finally:
        stalling.release.set()
        for stream in held:
            stream.__exit__(None, None, None)
    assert httpx.get(f"{api}/models", timeout=DEADLINE).status_code == 200
    # About 1,100 idle sockets used to exhaust the default soft limit of open files.
    limits = Path(f"/proc/{proc.pid}/limits").read_text()
    files = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = files.split()[3:5]
    assert soft == hard, files


# --- what the API says: neutralised Markdown ---------------------------------------------


def test_images_in_answers_and_source_labels_are_neutralised(api):
    body = ask("Show me a picture of the lighthouse.", model="rag-library+sources")
    whole = httpx.post(f"{api}/chat/completions", json=body, timeout=DEADLINE)
    text = ChatCompletion.model_validate(whole.json()).choices[0].message.content
    with httpx.stream(
        "POST", f"{api}/chat/completions", json={**body, "stream": True}, timeout=DEADLINE
    ) as response:
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    streamed = "".join(
        (c["choices"][0]["delta"].get("content") or "") if c["choices"] else ""
        for c in map(json.loads, data[:-1])
    )
    for answer in (text, streamed):
        assert "lighthouse.md, Lighthouse keeping logo" in answer  # the heading's alt text
        assert "![" not in answer.replace("\\![", ""), answer  # no image left to fetch
        assert "\\![map](http://127.0.0.1:9/leak.png?q=secret)" in answer  # a link now


# --- shutting down -----------------------------------------------------------------------


def test_sigterm_mid_stream_ends_the_stream_with_an_error_event_then_exits(index, stalling):
    proc, base = serve(index, stalling)
    try:
        body = stall(direct_model(base))
        with httpx.stream(
            "POST", f"{base}/chat/completions", json=body, timeout=DEADLINE
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            data = []
            for line in lines:  # until the first words of the answer
                if line.startswith("data: "):
                    data.append(line[6:])
                    if "Half an" in line:
                        break
            proc.send_signal(signal.SIGTERM)
            data += [line[6:] for line in lines if line.startswith("data: ")]
        assert data[-1] != "[DONE]"
        error = json.loads(data[-1])
        assert set(error) == {"error"}
        assert "shutting down" in ErrorObject.model_validate(error["error"]).message
        proc.wait(timeout=DEADLINE)  # it exits: TimeoutExpired fails the test
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
