"""Real HTTP servers for the tests: ``rag serve`` and the Chainlit app in their own
processes, and two tiny stand-ins for remote servers that misbehave or must be watched."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from rag.answers.prompts import cited_numbers

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_rag_server(env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, str]:
    """``rag serve`` as a separate process; returns it and its /v1 base URL."""
    port = free_port()
    # A file, not a pipe: a full pipe would block the server. Closed with the process.
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--port", str(port), *extra],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/v1"
    wait_until_up(f"{base}/models", proc, lambda: _read(log), "rag serve", timeout=180)
    return proc, base


def wait_until_up(
    url: str, proc: subprocess.Popen, log: Callable[[], str], what: str, timeout: float
) -> None:
    """Wait until ``url`` answers; raise with the server's log if it exits or the deadline
    passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; its log:\n{log()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.3)  # between polls of the condition, not instead of it
    proc.kill()
    proc.wait(timeout=30)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f} s; its log:\n{log()}")


def ingest(folder: Path, index: Path, env: dict[str, str] | None = None) -> None:
    """``rag ingest`` of ``folder`` into ``index``, in its own process."""
    done = subprocess.run(
        [sys.executable, "-m", "ingest", str(folder)],
        env={**os.environ, **(env or {}), "RAG_INDEX": str(index)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


def rag(*args, index: Path, stdin: str | None = None, env: dict | None = None):
    """``rag *args`` as a person runs it, in its own process, on ``index``."""
    # Temperature 0: answers checked here must not vary by chance.
    full_env = {
        **os.environ,
        "RAG_INDEX": str(index),
        "RAG_COLLECTION": "test",
        "RAG_TEMPERATURE": "0",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )


class App:
    """``chainlit run app.py`` on a free port, stopped by ``close``. ``env`` adds to
    (and ``unset`` takes from) this process's environment."""

    def __init__(
        self, index: Path, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RAG_INDEX": str(index),
            "RAG_MAX_ANSWER_TOKENS": "120",
            **(env or {}),
        }
        for name in unset:
            self.env.pop(name, None)
        self.log_path = index.parent / f"chainlit-{self.port}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chainlit",
                    "run",
                    "app.py",
                    "--headless",
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_up(self.url, self.proc, self.log_path.read_text, "chainlit", timeout=120)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        # A stopping Chainlit deletes its app root's .files, which every app started from
        # this folder shares: the apps still running need it back to store uploads and
        # the passages they show.
        (ROOT / ".files").mkdir(exist_ok=True)


def _read(log) -> str:
    log.seek(0)
    return log.read()


class Recorder(ThreadingHTTPServer):
    """An OpenAI-style server on loopback that keeps every request body it gets.

    It stands in for a remote (cloud) model in privacy tests: the test declares
    127.0.0.1 untrusted, so the app must treat this server as off the machine."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _RecorderHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.server.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for text in ("The remote ", "model answered [1]."):
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "remote",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args) -> None:
        pass


class Silent:
    """Accepts connections and never answers: a server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def printed_sources(stdout: str) -> tuple[str, list[int]]:
    """The answer ``rag ask`` printed and the numbers of the sources listed after it,
    checked against its citations: the passages it cites or, citing none, all it was
    given (which ones it cites is the model's choice, and varies by CPU)."""
    heading = "\nSources:" if "\nSources:" in stdout else "\nRetrieved (not cited):"
    answer, _, sources = stdout.partition(heading)
    numbers = [int(n) for n in re.findall(r"^  \[(\d+)\] .+  \(/.+\)$", sources, re.M)]
    assert numbers, stdout
    # Citations attributed after generation (#26) are printed with the answer again.
    with_citations = re.search(r"^With citations: (.*)$", answer, re.M)
    cited_text = with_citations[1] if with_citations else answer
    if heading == "\nSources:":
        assert numbers == [n for n in cited_numbers(cited_text, 99) if n <= max(numbers)]
    else:
        assert numbers == list(range(1, len(numbers) + 1))
    return answer, numbers


def check_sources_text(text: str, rag: dict) -> str:
    """The sources a text-only client gets after the answer: the passages the answer
    cites or, citing none, all it was given, each named as its number's passage. What
    the model cites is its own choice (and varies by CPU), so that is read from its
    answer, never assumed. Returns the answer before the sources."""
    found = re.search(r"\n\n(Sources|Retrieved \(not cited\)):\n((?:- \[\d+\] .+(?:\n|$))+)$", text)
    assert found, text
    answer, listed = text[: found.start()], re.findall(r"^- \[(\d+)\] (.+)$", found[2], re.M)
    labels = {s["number"]: s["label"] for s in rag["sources"]}
    assert all(labels[int(n)] == label for n, label in listed), (listed, labels)
    # The text streamed before the checks; its citations, with those attributed after
    # generation (#26), are the rag field's answer.
    cited = cited_numbers(rag.get("answer", answer), len(labels))
    assert [int(n) for n, _ in listed] == (cited if found[1] == "Sources" else sorted(labels))
    return answer


class HeldModel(ThreadingHTTPServer):
    """An OpenAI-style model server on loopback that starts each answer ("Held ") and
    holds the rest until ``release`` is set: the test sees how many answers run at
    once. With ``slots`` it says how many it gives at once, as llama.cpp's server does
    at ``/props``."""

    def __init__(self, slots: int | None = None) -> None:
        self.slots = slots
        self.active = 0  # answers begun and not yet finished
        self.most = 0  # the most at once
        self.release = threading.Event()
        self._count = threading.Lock()
        super().__init__(("127.0.0.1", 0), _HeldHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def running(self, change: int) -> None:
        with self._count:
            self.active += change
            self.most = max(self.most, self.active)

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _HeldHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/props" and self.server.slots:
            self._json({"total_slots": self.server.slots})
        elif self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": "m", "object": "model"}]})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.running(+1)
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self._chunk("Held ")
            self.server.release.wait(timeout=120)  # a deadline, should the test fail
            self._chunk("answer.")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        finally:
            self.server.running(-1)

    def _chunk(self, text: str) -> None:
        chunk = {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def rag_command(*args: str, stdin: str = "", check: bool = False) -> subprocess.CompletedProcess:
    """``rag *args`` in its own process, in this environment (no index of its own)."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )
