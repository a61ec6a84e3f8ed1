"""The cross-process writer lock of a library.

Every change to the chunk store, the documents table or the word index happens
under it, so two ingests never interleave their writes, and a reader repairing
its word index never races a writer. Readers that find it held skip their
repair and try again later: they never wait behind an ingest to answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from rag.errors import RagError

WRITER_TIMEOUT_S = 600.0


class Lock(Protocol):
    """The writer lock's role: this file lock, or PostgreSQL's (rag/library/shared_lock.py)."""

    shared: bool  # True: every writer of the library, on every machine, takes this lock

    @property
    def depth(self) -> int: ...
    def hold(self, timeout: float = WRITER_TIMEOUT_S) -> AbstractContextManager[None]: ...
    def try_hold(self) -> bool: ...
    def release(self) -> None: ...


class WriterLock:
    """A lock file: serialises the writers of one machine (the embedded index's own)."""

    shared = False

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
