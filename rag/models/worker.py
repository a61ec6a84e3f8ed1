"""An in-process ONNX model run in a child process of its own, so it never stalls the loop.

ONNX Runtime GenAI holds the GIL in its native calls (loading the model, a slice of
the prompt, a token). Run in a thread beside the event loop, it froze every other
request the process serves for as long as each call took: a ``GET /v1/models`` sent
during an answer waited for the prompt's slices, and the answer's own chunks left in
bursts (#25). In a child process it holds only its own GIL; the parent reads the
tokens from a pipe, which releases the GIL while it waits.

One generation at a time, as before: the parent admits one request to the child and
the others wait for their turn (a waiting request that is cancelled leaves at once).
Tokens are counted in the parent with the model folder's own ``tokenizer.json``.
"""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from rag.errors import ModelUnavailable
from rag.models.base import Message, estimate_tokens
from rag.models.threaded import stream_in_thread, wait_for_turn

POLL_SECONDS = 0.05  # how often a waiting reader looks whether its answer was stopped
START_SECONDS = 300  # a model process that has not called back by then is given up


class ProcessChat:
    """``OnnxGenAIChat`` in a child process; the same ``ChatModel`` from the outside."""

    local = True

    def __init__(self, folder: Path, name: str | None = None) -> None:
        self._process, self._conn = _start(folder, name)
        reply = self._receive()
        if reply[0] == "error":
            self._process.wait(timeout=10)
            raise ModelUnavailable(reply[1])
        _, self.name, self.context_window = reply
        self._counter = _counter(folder)
        self._turn = threading.Lock()
        self._ids = itertools.count()

    def count_tokens(self, text: str) -> int:
        if self._counter is None:
            return estimate_tokens(text)
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        request = (list(messages), max_tokens, temperature, repetition_penalty)
        return stream_in_thread(lambda cancel: self._produce(request, cancel), name="rag-model")

    def close(self) -> None:
        """Stop the child (it also stops by itself when this process ends)."""
        self._conn.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)

    def _produce(self, request: tuple, cancel: threading.Event) -> Iterator[str]:
        if not wait_for_turn(self._turn, cancel):
            return
        ask = next(self._ids)
        ended = False
        try:
            self._conn.send(("generate", ask, *request))
            while not ended:
                if cancel.is_set():
                    return
                if not self._conn.poll(POLL_SECONDS):
                    continue
                kind, of, *rest = self._receive()
                if of != ask:
                    continue  # what a stopped answer sent before it heard the stop
                if kind == "token":
                    yield rest[0]
                elif kind == "error":
                    ended = True
                    raise ModelUnavailable(rest[0])
                else:
                    ended = True
        finally:
            try:
                if not ended:  # stopped: tell the child, and wait until it has stopped
                    self._conn.send(("cancel", ask))
                    while self._receive()[:2] != ("end", ask):
                        pass
            finally:
                self._turn.release()

    def _receive(self) -> tuple:
        try:
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            code = self._process.poll()
            raise ModelUnavailable(
                f"The model process stopped (exit code {code}); restart the app or rag serve."
            ) from exc


def _start(folder: Path, name: str | None) -> tuple[subprocess.Popen, Connection]:
    """The child, started as ``python -m rag.models.worker`` (not multiprocessing's
    spawn, which imports the parent's main script again), connected back to a
    listener that only a process given its one-time key may use."""
    key = secrets.token_bytes(32)
    with Listener(authkey=key) as listener:  # a Unix socket, or a named pipe on Windows
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.models.worker", str(listener.address)],
            stdin=subprocess.PIPE,
        )
        assert process.stdin is not None
        process.stdin.write(b"%s\n%s\n" % (key.hex().encode(), str(folder).encode()))
        process.stdin.write((name or "").encode() + b"\n")
        process.stdin.close()
        accepted: list[Connection] = []
        waiting = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
        waiting.start()
        waiting.join(START_SECONDS)
        if not accepted:
            process.kill()
            raise ModelUnavailable(
                f"The model process did not start (exit code {process.wait(timeout=10)})."
            )
    return process, accepted[0]


def _counter(folder: Path) -> Any:
    """The model's tokenizer for counting, or None (then counts are estimates)."""
    file = folder / "tokenizer.json"
    if not file.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(file))


class _Stop:
    """The child's view of a stop: a ``cancel`` message waiting on the pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._set = False

    def is_set(self) -> bool:
        # Only the answer being generated can be stopped: the parent waits for its end.
        if not self._set and self._conn.poll():
            self._set = self._conn.recv()[0] == "cancel"
        return self._set


def main() -> None:
    """The child: connect back, load the model, then answer one request after another
    until the parent closes the connection (or goes away)."""
    from rag.models.onnx_genai import OnnxGenAIChat

    key, folder, name = (sys.stdin.readline().rstrip("\n") for _ in range(3))
    conn = Client(sys.argv[1], authkey=bytes.fromhex(key))
    try:
        model = OnnxGenAIChat(Path(folder), name or None)
    except Exception as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", model.name, model.context_window))
    while True:
        try:
            kind, ask, *request = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "generate":
            _answer(conn, model, ask, request)


def _answer(conn: Connection, model: Any, ask: int, request: list) -> None:
    messages, max_tokens, temperature, penalty = request
    stop = _Stop(conn)
    sampling = {"temperature": temperature, "repetition_penalty": penalty}
    try:
        for text in model._generate(messages, max_tokens, sampling, stop, []):
            conn.send(("token", ask, text))
            if stop.is_set():
                break
    except Exception as exc:
        if not stop.is_set():
            conn.send(("error", ask, f"{model.name} failed while generating: {exc}"))
    conn.send(("end", ask))


if __name__ == "__main__":
    main()
