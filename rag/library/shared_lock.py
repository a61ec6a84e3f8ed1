"""The writer lock of a library shared by several machines: a PostgreSQL advisory lock.

A file lock serialises the writers of one machine only. When the library lives on a
Chroma server (``RAG_CHROMA_URL``) and ``RAG_DATABASE_URL`` names PostgreSQL, every
writer on every machine takes the same session-level advisory lock instead, keyed by
the server and collection. PostgreSQL releases it when the holder's connection ends,
so a writer that dies (or whose machine does) never leaves the lock behind: it is a
lease held by a live connection.

asyncpg is the only PostgreSQL driver the app has; the library is synchronous, so
the lock's connection lives on an event loop of its own in a daemon thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rag.errors import RagError
from rag.library.locking import WRITER_TIMEOUT_S

T = TypeVar("T")
_POLL_S = 0.2  # how often a waiting writer asks again (advisory locks do not queue here)
_CONNECT_S = 20.0


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for a library's name (server URL and collection)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def plain_url(url: str) -> str:
    """asyncpg takes postgresql:// URLs, not SQLAlchemy's postgresql+asyncpg://."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


class _Loop:
    """One event loop in a daemon thread, for every lock's connection in the process
    (a chat's files are a library too: one thread per chat would never end)."""

    _made: _Loop | None = None
    _making = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="writer-lock").start()

    @classmethod
    def shared(cls) -> _Loop:
        with cls._making:
            if cls._made is None:
                cls._made = cls()
            return cls._made

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = _CONNECT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class SharedWriterLock:
    """``WriterLock``'s interface over a PostgreSQL advisory lock (see the module's doc).

    Re-entrant in one thread; two threads of one process exclude each other (a local
    lock first), and two processes anywhere exclude each other through PostgreSQL.
    """

    shared = True  # every writer of this library, on any machine, holds it while writing

    def __init__(self, database_url: str, name: str) -> None:
        self.path = f"PostgreSQL advisory lock {name!r}"
        self._url = plain_url(database_url)
        self._key = lock_key(name)
        self._local = threading.RLock()
        self._owner: int | None = None
        self._depth = 0
        self._conn: Any = None

    @property
    def depth(self) -> int:
        """How many times this thread holds the lock (0: not held)."""
        return self._depth if self._owner == threading.get_ident() else 0

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return _Loop.shared().run(coro)

    def _try_database(self) -> bool:
        """One try at the advisory lock on a fresh connection; the connection is kept
        while held (closing it releases the lock)."""
        import asyncpg  # only where a shared library is configured

        async def attempt() -> Any:
            conn = await asyncpg.connect(self._url, timeout=_CONNECT_S)
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
                return conn
            await conn.close()
            return None

        try:
            self._conn = self._run(attempt())
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise RagError(
                f"The writer lock is kept in PostgreSQL (RAG_DATABASE_URL) and it cannot be "
                f"reached ({exc}): start it, or check RAG_DATABASE_URL."
            ) from exc
        return self._conn is not None

    def _acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        got = self._local.acquire(timeout=timeout) if timeout > 0 else self._local.acquire(False)
        if not got:
            return False
        if self.depth:  # re-entered by the holder
            self._depth += 1
            return True
        try:
            while not self._try_database():
                if time.monotonic() >= deadline:
                    self._local.release()
                    return False
                time.sleep(_POLL_S)
        except BaseException:
            self._local.release()
            raise
        self._owner, self._depth = threading.get_ident(), 1
        return True

    @contextmanager
    def hold(self, timeout: float = WRITER_TIMEOUT_S) -> Iterator[None]:
        """Wait for the lock (re-entrant in one thread); a stuck writer gets a clear error."""
        if not self._acquire(timeout):
            raise RagError(
                f"Another process has been writing to this library for {timeout:.0f} s "
                f"({self.path}): wait for it to finish, or stop it."
            )
        try:
            yield
        finally:
            self.release()

    def try_hold(self) -> bool:
        """Take the lock if it is free now; pair with ``release``."""
        return self._acquire(0)

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            conn, self._conn = self._conn, None
            try:
                # Closing the session releases its advisory locks, whatever else happened.
                self._run(conn.close())
            except Exception:
                conn.terminate()
        self._local.release()
