"""Seeing documents that another process (``rag ingest``) added while the app runs.

The store knows how to look again cheaply (rag/library/store/ ``refresh``: two ``stat``
calls and one read of the documents table's generation when nothing changed);
this keeps one library per process and asks it to look before each search.
"""

from __future__ import annotations

from rag.library.live import Library


class LiveLibrary:
    """The shared library, brought up to date with other processes' writes."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def current(self) -> Library:
        self.library.store.refresh()  # safe from several worker threads at once: it locks
        return self.library
