"""The indexed documents: a Chroma collection and a lexical index, kept in step.

Every write goes through ``write`` and ``remove``, which order the two stores so
that the lexical index is never missing a chunk Chroma has (see rag/lexical.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chromadb.api.models.Collection import Collection

from rag import store
from rag.chunks import Chunk
from rag.config import Settings
from rag.embeddings import Embedder, create_embedder
from rag.lexical import LexicalIndex, lexical_path


@dataclass(frozen=True)
class Library:
    """The indexed documents, the model that embeds questions the same way, and how to search."""

    embedder: Embedder
    collection: Collection
    lexical: LexicalIndex
    settings: Settings


def open_library(settings: Settings, embedder: Embedder | None = None) -> Library:
    embedder = embedder or create_embedder(settings)
    collection = store.open_collection(settings.index, settings.collection, embedder.name)
    lexical = LexicalIndex(lexical_path(settings.index, settings.collection))
    library = Library(embedder, collection, lexical, settings)
    bring_in_step(library)
    return library


def bring_in_step(library: Library) -> tuple[int, int]:
    """Repair a lexical index that differs from Chroma: built before it existed, or a crash.

    Writers keep the lexical index a superset of Chroma, so equal counts mean equal
    ids and the check costs two counts. Returns the (added, removed) chunk counts.
    """
    if library.lexical.count() == library.collection.count():
        return 0, 0
    return library.lexical.sync(
        store.all_ids(library.collection), lambda ids: store.chunks(library.collection, ids)
    )


def write(library: Library, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
    library.lexical.add(chunks)  # first: a crash in between leaves only extra lexical ids
    store.upsert(library.collection, chunks, vectors)


def remove(library: Library, ids: Sequence[str]) -> None:
    store.delete(library.collection, ids)
    library.lexical.delete(ids)  # last, for the same reason
