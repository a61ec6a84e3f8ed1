"""Every library of the index, and the only way to them: for a reader (#24).

Each library is its own Chroma collection (with its own word index), so a search can
only return passages of the collections it queries. ``Shelf.readable`` reads the access
record (rag/library/access.py) on every call and opens, once per process, the libraries
it allows; nothing else hands out a library, so no path that reads passages (search,
summaries, evidence) reaches a library its reader cannot read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from rag.config import Settings
from rag.library.access import OWNER, Access, Reader
from rag.library.freshness import LiveLibrary
from rag.library.live import Library, open_library


class Shelf:
    """The libraries of one index, opened on first use and kept (``opened``: those a
    caller opened already, the default collection's first)."""

    def __init__(self, settings: Settings, opened: Mapping[str, Library]) -> None:
        self.settings = settings
        self.default = settings.collection
        self.access = Access.of(settings)
        self._open = {name: LiveLibrary(library) for name, library in opened.items()}
        self._embedder = next(iter(opened.values())).embedder
        self._lock = threading.Lock()

    def names(self, reader: Reader = OWNER, chosen: Iterable[str] | None = None) -> list[str]:
        """The libraries ``reader`` may read now (of ``chosen``, when given)."""
        names = self.access.readable(reader, self.default)
        if reader.user is None:  # the owner also reads collections opened by name
            names = list(dict.fromkeys([*self._open, *names]))
        wanted = None if chosen is None else set(chosen)
        return [n for n in names if wanted is None or n in wanted]

    def writable(self, reader: Reader = OWNER) -> list[str]:
        return self.access.writable(reader, self.default)

    def library(self, name: str) -> Library:
        """Blocking: one library by name, as other processes left it. Only for names
        ``names`` or ``writable`` gave."""
        with self._lock:
            if name not in self._open:
                settings = self.settings.with_overrides(collection=name)
                self._open[name] = LiveLibrary(open_library(settings, self._embedder))
            live = self._open[name]
        return live.current()

    def readable(
        self, reader: Reader = OWNER, chosen: Iterable[str] | None = None
    ) -> list[Library]:
        """Blocking: the libraries ``reader`` may read now, to search."""
        return [self.library(n) for n in self.names(reader, chosen)]
