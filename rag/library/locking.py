"""The cross-process writer lock of a library.

Every change to the chunk store, the documents table or the word index happens
under it, so two ingests never interleave their writes, and a reader repairing
its word index never races a writer. Readers that find it held skip their
repair and try again later: they never wait behind an ingest to answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from rag.errors import RagError

WRITER_TIMEOUT_S = 600.0


class WriterLock:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Thread-local: two threads of one process exclude each other like two processes.
        self._lock = FileLock(str(path), thread_local=True)

    @property
    def depth(self) -> int:
        """How many times this thread holds the lock (0: not held)."""
        return self._lock.lock_counter

    @contextmanager
    def hold(self, timeout: float = WRITER_TIMEOUT_S) -> Iterator[None]:
        """Wait for the lock (re-entrant in one thread); a stuck writer gets a clear error."""
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise RagError(
                f"Another process has been writing to this library for {timeout:.0f} s "
                f"(lock {self.path}): wait for it to finish, or stop it."
            ) from None
        try:
            yield
        finally:
            self._lock.release()

    def try_hold(self) -> bool:
        """Take the lock if it is free now; pair with ``release``."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()
