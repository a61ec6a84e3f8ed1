"""The store's seam: the ``LibraryStore`` protocol every other module uses, its
check report, and the limits its implementations share."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from chromadb.errors import ChromaError

from rag.errors import RagError
from rag.library.chunks import Chunk
from rag.library.documents import Document

_FIELDS = ("source", "index", "page", "heading", "start", "end")
# Chroma rejects batches above client.get_max_batch_size() (5461 for SQLite in 1.5);
# a fixed, smaller batch keeps every call under it without reaching into the client.
BATCH = 4096
_PAGE = 5000
_LOW_DISK_MB = 64  # a write that failed with less free than this likely ran out of space
Embed = Callable[[list[str]], Sequence[Sequence[float]]]


class IndexDamaged(RagError):
    """Chroma cannot read its own files: ``rag check --repair`` rebuilds them."""


# What Chroma says when its vector index cannot be read back (or has lost vectors).
_DAMAGE_WORDS = ("pickle", "deserializ", "hnsw", "segment reader", "apply logs", "finding id")


def _is_chroma(exc: Exception) -> bool:
    return isinstance(exc, ChromaError | sqlite3.Error)


@dataclass
class CheckReport:
    """How the chunk store, the documents table and the word index agree."""

    backend: str
    documents: int = 0
    chunks_in_chroma: int = 0
    chunks_in_word_index: int = 0
    only_in_chroma: list[str] = field(default_factory=list)  # ids the word index lacks
    only_in_word_index: list[str] = field(default_factory=list)
    versions_disagree: list[str] = field(default_factory=list)  # sources
    unfinished: list[str] = field(default_factory=list)  # sources a writer left dirty
    without_vector: list[str] = field(default_factory=list)  # ids the vector index lacks
    damaged: str | None = None  # what Chroma cannot read, in a sentence
    rebuilt: int = 0  # chunks embedded again by a repair

    @property
    def consistent(self) -> bool:
        return not (
            self.only_in_chroma
            or self.only_in_word_index
            or self.versions_disagree
            or self.unfinished
            or self.without_vector
            or self.damaged
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "consistent": self.consistent,
            "documents": self.documents,
            "chunks_in_chroma": self.chunks_in_chroma,
            "chunks_in_word_index": self.chunks_in_word_index,
            "only_in_chroma": self.only_in_chroma,
            "only_in_word_index": self.only_in_word_index,
            "versions_disagree": self.versions_disagree,
            "unfinished": self.unfinished,
            "without_vector": self.without_vector,
            "damaged": self.damaged,
            "rebuilt": self.rebuilt,
        }


@runtime_checkable
class LibraryStore(Protocol):
    """What the rest of the app may ask of the library's storage."""

    backend: str

    def write(
        self, document: Document, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
    ) -> None:
        """Store one complete version of a document, replacing any other version."""

    def write_many(
        self, items: Sequence[tuple[Document, Sequence[Chunk], Sequence[Sequence[float]]]]
    ) -> None:
        """``write`` for several documents, in fewer round trips."""

    def remove(self, sources: Sequence[str]) -> None: ...
    def nearest(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` nearest chunk ids with cosine similarity, best first."""

    def keyword(
        self, query: str, k: int, sources: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best (id, BM25 score) pairs from the word index, best first."""

    def keyword_scores(self, query: str, ids: Sequence[str]) -> dict[str, float]: ...
    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[Chunk, list[float]]]:
        """Chunks and their vectors by id; ids that no longer exist are absent."""

    def documents(self) -> dict[str, Document]: ...
    def document_chunks(self, source: str) -> list[Chunk]:
        """The chunks of a document's recorded version, in order."""

    def count(self) -> int: ...
    def writing(self) -> Any:
        """A context manager holding the cross-process writer lock (re-entrant)."""

    def refresh(self) -> None:
        """See what other processes wrote since the last look."""

    def check(self) -> CheckReport: ...
    def repair(self, embed: Embed | None = None) -> CheckReport:
        """Make the store consistent; ``embed`` embeds chunks whose vector was lost."""

    def close(self) -> None: ...
