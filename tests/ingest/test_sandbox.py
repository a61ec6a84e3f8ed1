"""The reader's worker process (rag/ingest/sandbox.py): real processes, real limits.

Each failure here is one file's: the reason names the limit and its setting, and
the next file is read by a fresh worker. A file read without trouble leaves the
worker for the next one, so many small files cost one process start.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from rag.ingest.readers import check
from rag.ingest.readers.types import Unreadable
from rag.ingest.sandbox import Limits, Sandbox

pytestmark = pytest.mark.integration  # every test starts the reader worker process

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the memory cap is Linux's")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@linux_only
def test_a_file_that_needs_more_memory_than_the_cap_fails_alone():
    with Sandbox(Limits(memory_mb=300, seconds=120)) as sandbox:
        first = sandbox.call(os.getpid)
        with pytest.raises(
            Unreadable, match=r"too large to read safely: .*300 MB .*RAG_READ_MEMORY_MB"
        ):
            sandbox.call(bytearray, 2**30)
        assert sandbox.call(len, "after") == 5
        assert sandbox.call(os.getpid) != first  # a fresh worker after a failure
        assert _gone(first)


def test_a_file_still_being_read_at_the_time_limit_is_stopped():
    with Sandbox(Limits(memory_mb=1024, seconds=1)) as sandbox:
        first = sandbox.call(os.getpid)
        with pytest.raises(Unreadable, match=r"not read within 1 s .*RAG_READ_TIMEOUT_S"):
            sandbox.call(time.sleep, 120)
        assert _gone(first)
        assert sandbox.call(len, "after") == 5


def test_a_reader_that_crashes_or_raises_fails_its_file_only():
    with Sandbox(Limits(memory_mb=1024, seconds=120)) as sandbox:
        with pytest.raises(Unreadable, match=r"its reader stopped \(SIGKILL\)"):
            sandbox.call(signal.raise_signal, signal.SIGKILL)
        with pytest.raises(Unreadable, match="could not be parsed: ValueError: invalid literal"):
            sandbox.call(int, "not a number")
        assert sandbox.call(len, "after") == 5


def test_one_worker_reads_file_after_file_until_it_is_closed(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.touch()
    with Sandbox(Limits(memory_mb=1024, seconds=120)) as sandbox:
        worker = sandbox.call(os.getpid)
        with pytest.raises(Unreadable, match="empty file"):  # a reader's own verdict
            sandbox.call(check, empty, 100)
        assert sandbox.call(os.getpid) == worker
    assert _gone(worker)


def test_closing_stops_the_file_being_read_and_every_one_after_it():
    # As Ctrl-C during an ingest does: the reading thread waits on the worker meanwhile.
    sandbox = Sandbox(Limits(memory_mb=1024, seconds=600))
    sandbox.call(len, "started")
    reasons: list[str] = []

    def read() -> None:
        try:
            sandbox.call(time.sleep, 600)
        except Unreadable as exc:
            reasons.append(str(exc))

    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    sandbox.close()
    reading.join(timeout=120)
    assert not reading.is_alive() and len(reasons) == 1
    with pytest.raises(Unreadable, match="reading was stopped"):
        sandbox.call(len, "after")
