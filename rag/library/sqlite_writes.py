"""One write transaction on a SQLite connection that several threads share.

The documents table and the word index each keep one connection per process:
a thread lock orders the threads, and ``BEGIN IMMEDIATE`` takes SQLite's write
lock at the start, so another process's writer makes this one wait (busy
timeout) instead of failing halfway through.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def write_transaction(
    db: sqlite3.Connection, lock: threading.RLock
) -> Iterator[sqlite3.Connection]:
    """Commit what the block writes, or roll all of it back on any exception."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.rollback()
            raise
        db.commit()
