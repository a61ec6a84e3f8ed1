"""Reading untrusted files in a worker process with a memory cap and a time limit.

A file's bytes reach parsers written in C (PDFium, lxml, zlib, Pillow, ONNX
Runtime) that trust them more than they should: a 1 MB PDF or DOCX can inflate
to gigabytes, an image header can promise billions of pixels. So every reader
runs in a worker process that caps its own memory (``RLIMIT_DATA``, Linux) and
is killed when a file takes longer than the time limit. Whatever happens to the
worker is the failure of the one file it was reading, reported with the limit
and the setting that raises it; the next file gets a fresh worker. A file read
without trouble leaves the worker for the next one, so many small files cost
one process start.

The worker is a fresh interpreter (``subprocess``) running ``serve`` below; the
calls and their outcomes are pickled over its stdin and stdout. Not
``multiprocessing``: its children (spawn or forkserver) import the parent's main
module first, which under ``chainlit run`` costs about 3 s and 100 MB (of the
memory cap) per worker, for every upload; this worker starts in about 0.1 s.

``RLIMIT_DATA`` rather than ``RLIMIT_AS``: ONNX Runtime (OCR) reserves much more
address space than it uses (about 2 GB reserved for 1.1 GB used), so a cap on
address space would have to be loose; the data limit counts the heap and the
private mappings that memory use actually grows.

The worker is a boundary for memory, time and crashes, not for code execution:
a parser exploited into running code could answer the parent anything.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from rag.errors import RagError
from rag.ingest.readers.types import Unreadable

R = TypeVar("R")

_START_S = 60.0  # for a worker to start and say it is ready
_STOP_S = 10.0
_REASON_CHARS = 300
_GONE = object()  # what the pipe gives when the worker has ended


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1280
    seconds: float = 600.0


@dataclass(frozen=True)
class _Outcome:
    value: Any = None
    error: str | None = None
    keep: bool = True  # whether the worker may read the next file


def too_much_memory(memory_mb: int) -> str:
    return (
        f"too large to read safely: it needs more than the {memory_mb} MB of memory "
        "its reader may use (RAG_READ_MEMORY_MB)"
    )


class _Worker:
    """One reader process, the pipes to it, and a thread that reads its answers."""

    def __init__(self, memory_mb: int) -> None:
        # -P: nothing is imported from the current folder, only from where this code is.
        command = [sys.executable, "-P", "-c", "from rag.ingest.sandbox import serve; serve()"]
        self.process = subprocess.Popen(
            [*command, str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": _import_path()},
        )
        self._answers: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._pump, name="rag-reader-answers", daemon=True).start()
        if self._next(_START_S) is not None:  # None: ready, the limit set
            self.stop()
            raise RuntimeError(
                f"the reader process did not start (exit code {self.process.returncode})"
            )

    def _pump(self) -> None:
        assert self.process.stdout is not None
        try:
            while True:
                self._answers.put(pickle.load(self.process.stdout))
        except Exception:  # EOFError when it ends; anything else is as bad
            self._answers.put(_GONE)

    def _next(self, seconds: float) -> Any:
        try:
            return self._answers.get(timeout=seconds)
        except queue.Empty:
            return _GONE

    def call(self, fn: Callable[..., Any], args: tuple, limits: Limits) -> _Outcome:
        assert self.process.stdin is not None
        try:
            pickle.dump((fn, args), self.process.stdin)
            self.process.stdin.flush()
        except OSError:  # it ended while idle
            return self._stopped(limits)
        try:
            answer = self._answers.get(timeout=limits.seconds)
        except queue.Empty:
            return _Outcome(
                error=f"too large to read safely: not read within {limits.seconds:g} s "
                "(RAG_READ_TIMEOUT_S)",
                keep=False,
            )
        if answer is _GONE:
            return self._stopped(limits)
        outcome: _Outcome = answer
        return outcome

    def _stopped(self, limits: Limits) -> _Outcome:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_STOP_S)
        return _Outcome(error=_stopped(self.process.returncode, limits), keep=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_STOP_S)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _import_path() -> str:
    """Where this code is imported from first, then the caller's own PYTHONPATH."""
    here = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([here, rest] if rest else [here])


def _stopped(exitcode: int | None, limits: Limits) -> str:
    how = f"exit code {exitcode}"
    if exitcode is not None and exitcode < 0:  # killed by a signal (POSIX)
        with contextlib.suppress(ValueError):
            how = signal.Signals(-exitcode).name
    return (
        f"too large to read safely, or damaged: its reader stopped ({how}), "
        f"within the {limits.memory_mb} MB it may use (RAG_READ_MEMORY_MB)"
    )


class Sandbox:
    """Runs ``fn(*args)`` in a worker under ``limits``; one call at a time.

    A failure raises ``Unreadable`` with the reason and the worker is replaced;
    use it as a context manager (or call ``close``) to end the worker.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._worker: _Worker | None = None
        self._lock = threading.Lock()
        self._closed = False

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        with self._lock:
            if self._closed:
                raise Unreadable("not read: reading was stopped")
            if self._worker is None:
                self._worker = self._start()
            try:
                outcome = self._worker.call(fn, args, self.limits)
            except BaseException:  # interrupted while waiting: the worker is in an unknown state
                self._stop()
                raise
            if not outcome.keep:
                self._stop()
        if outcome.error is not None:
            raise Unreadable(outcome.error)
        result: R = outcome.value
        return result

    def _start(self) -> _Worker:
        try:
            return _Worker(self.limits.memory_mb)
        except (OSError, RuntimeError) as exc:  # the system's trouble, not a file's
            raise RagError(f"Could not start the process that reads files: {exc}") from exc

    def _stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def close(self) -> None:
        """Ends the worker now, even mid-file (Ctrl-C): that file fails, no other starts."""
        self._closed = True
        worker = self._worker
        if worker is not None and worker.process.poll() is None:
            worker.process.kill()  # without the lock: a call waiting on it ends at once
        with self._lock:
            self._stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# In the worker ---------------------------------------------------------------


def serve() -> None:
    """The worker's loop: one call at a time from stdin, its outcome to stdout."""
    memory_mb = int(sys.argv[1])
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what a library prints goes to stderr, never into the answers
    requests = sys.stdin.buffer
    # Ctrl-C reaches the whole process group: the parent handles it and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent()
    _cap_memory(memory_mb)
    _answer(answers, None)  # ready
    while True:
        try:
            fn, args = pickle.load(requests)
        except EOFError:
            return  # the parent is done, or gone
        outcome = _run(fn, args, memory_mb)
        try:
            _answer(answers, outcome)
        except MemoryError:  # a result too large to send back under the cap
            outcome = _Outcome(error=too_much_memory(memory_mb), keep=False)
            _answer(answers, outcome)
        if not outcome.keep:
            return


def _answer(answers: IO[bytes], outcome: _Outcome | None) -> None:
    answers.write(pickle.dumps(outcome))
    answers.flush()


def _end_with_parent() -> None:
    """Ends this worker when the parent dies mid-file (killed: no Ctrl-C, no EOF yet)."""
    parent = os.getppid()
    if sys.platform == "win32":
        return  # the parent's pipes close with it; the file under way finishes first

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run(fn: Callable[..., Any], args: tuple, memory_mb: int) -> _Outcome:
    try:
        return _Outcome(fn(*args))
    except Unreadable as exc:
        return _Outcome(error=str(exc)[:_REASON_CHARS])
    except MemoryError:
        return _Outcome(error=too_much_memory(memory_mb), keep=False)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "alloc" in text.lower():  # C++ std::bad_alloc, "Failed to allocate", ...
            return _Outcome(error=too_much_memory(memory_mb), keep=False)
        reason = f"could not be parsed: {type(exc).__name__}: {text}"
        return _Outcome(error=reason[:_REASON_CHARS], keep=False)


def _cap_memory(memory_mb: int) -> None:
    """This process's data segment (heap and private mappings) capped, where the
    system enforces it: Linux does; elsewhere only the time limit applies."""
    try:
        import resource
    except ImportError:  # Windows
        return
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    limit = memory_mb * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    # Where the system refuses the limit, the time limit still applies.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
