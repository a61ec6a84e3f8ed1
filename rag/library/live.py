"""The indexed documents: a store (rag/library/store/) and the model that embeds questions."""

from __future__ import annotations

from dataclasses import dataclass

from rag.config import Settings
from rag.embeddings.embedder import Embedder, create_embedder
from rag.library.store import LibraryStore, open_store


@dataclass(frozen=True)
class Library:
    """The indexed documents, the model that embeds questions the same way, and how to search."""

    embedder: Embedder
    store: LibraryStore
    settings: Settings


def open_library(settings: Settings, embedder: Embedder | None = None) -> Library:
    model: Embedder = embedder or create_embedder(settings)
    return Library(model, open_store(settings, model.name), settings)
