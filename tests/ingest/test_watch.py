"""``rag ingest --watch``: a real watcher process following a real folder."""

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from rag.config import Settings
from rag.library.search import open_library, search

from docbuilders import docx_with_broken_xml, docx_zip_bomb

DEADLINE = 120  # seconds for any one change to show (generous: the test machine is shared)
FIRST = 300  # the first ingest also loads the embedding model


class LogReader:
    """The watcher's log lines, as they come, with a deadline on each wait."""

    def __init__(self, process):
        self.process, self.lines, self.seen = process, queue.Queue(), []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_each(self, *expected, timeout=DEADLINE):
        """Lines with each of the ``expected`` word tuples, in any order."""
        deadline = time.monotonic() + timeout
        for words in expected:
            if not any(all(w in line for w in words) for line in self.seen):
                self.wait_for(*words, timeout=max(deadline - time.monotonic(), 0.01))

    def wait_for(self, *words, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            self.seen.append(line)
            if all(w in line for w in words):
                return line
        raise AssertionError(
            f"no line with {words} within {timeout} s; log so far:\n"
            + "\n".join(self.seen)
            + f"\nexit code: {self.process.poll()}"
        )


@pytest.fixture
def watcher(tmp_path, processes):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "first.md").write_text("# First\n\nThe first note mentions lighthouses.\n")
    index = tmp_path / "index"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "ingest",
            "--watch",
            str(folder),
            "--index",
            str(index),
            "--collection",
            "watched",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = LogReader(process)
    try:
        yield folder, index, process, log
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_watch_follows_added_modified_moved_and_deleted_files(watcher):
    folder, index, process, log = watcher
    log.wait_for("added", "first.md", timeout=FIRST)
    log.wait_for("watching")

    (folder / "second.txt").write_text("The second note is about glaciers.")
    log.wait_for("added", "second.txt")

    (folder / "second.txt").write_text("The second note is now about volcanoes instead.")
    log.wait_for("updated", "second.txt")

    (folder / "sub").mkdir()
    (folder / "second.txt").rename(folder / "sub" / "moved.txt")
    log.wait_for_each(("removed", "second.txt"), ("added", "moved.txt"))

    (folder / "first.md").unlink()
    log.wait_for("removed", "first.md")

    # The folder disappears and comes back with other contents.
    shutil.rmtree(folder)
    log.wait_for("gone", str(folder))
    folder.mkdir()
    (folder / "third.md").write_text("A third note, about orchards.")
    log.wait_for("added", "third.md")

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=DEADLINE) == 0
    log.wait_for("stopped watching")

    library = open_library(Settings(index=index, collection="watched"))
    sources = set(library.store.documents())
    assert sources == {str(folder / "third.md")}
    lexical = library.settings.with_overrides(search_mode="lexical")
    assert [h.chunk.source for h in search(library, "orchards", 3, lexical)] == [
        str(folder / "third.md")
    ]


def test_hostile_files_fail_alone_and_the_watch_goes_on(watcher):
    folder, _, process, log = watcher
    log.wait_for("watching", timeout=FIRST)

    # Built beside the folder, then moved in whole: the watcher never sees half a file.
    docx_with_broken_xml(folder.parent / "broken.docx").rename(folder / "broken.docx")
    log.wait_for("failed", "broken.docx", "damaged DOCX")
    docx_zip_bomb(folder.parent / "bomb.docx").rename(folder / "bomb.docx")
    log.wait_for("failed", "bomb.docx", "too large to read safely")

    (folder / "after.md").write_text("Written after the hostile files: about kestrels.")
    log.wait_for("added", "after.md")
    assert process.poll() is None
