"""Seeing documents that another process (``rag ingest``) added while the app runs.

Chroma's embedded client caches its vector index per process: after another
process writes, this one's ``count`` and ``get`` see the change but ``query``
does not. Reopening the client after clearing Chroma's per-process cache costs
about 10 ms, so the app checks, before each search, whether the index files
changed on disk (two ``stat`` calls) and reopens only then.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from chromadb.api.client import SharedSystemClient

from rag import store
from rag.library import Library

_FILES = ("chroma.sqlite3", "chroma.sqlite3-wal")


def signature(index: Path) -> tuple[tuple[int, int], ...]:
    def stat(path: Path) -> tuple[int, int]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    return tuple(stat(index / name) for name in _FILES)


class LiveLibrary:
    """The shared library, reopened when the index on disk has changed."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._seen = signature(library.settings.index)
        self._lock = threading.Lock()  # chats ask from worker threads, maybe at once

    def current(self) -> Library:
        with self._lock:
            return self._refresh()

    def _refresh(self) -> Library:
        now = signature(self.library.settings.index)
        if now != self._seen:
            # Clients already open elsewhere in the process (a chat's uploads) keep working.
            SharedSystemClient.clear_system_cache()
            # Only Chroma needs reopening: SQLite already sees the writer's lexical rows,
            # and repairing them here could race the ingest that is still running.
            settings = self.library.settings
            collection = store.open_collection(
                settings.index, settings.collection, self.library.embedder.name)
            self.library = replace(self.library, collection=collection)
            self._seen = signature(settings.index)
        return self.library
