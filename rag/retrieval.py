"""Finding the chunks that answer a question."""

from __future__ import annotations

from dataclasses import dataclass

from chromadb.api.models.Collection import Collection

from rag import store
from rag.chunks import Hit
from rag.config import Settings
from rag.embeddings import Embedder, SentenceTransformerEmbedder


@dataclass(frozen=True)
class Library:
    """The indexed documents and the model that embeds questions the same way."""

    embedder: Embedder
    collection: Collection


def open_library(settings: Settings, embedder: Embedder | None = None) -> Library:
    embedder = embedder or SentenceTransformerEmbedder(
        settings.embedding_model, settings.embed_batch_size
    )
    collection = store.open_collection(settings.index, settings.collection, embedder.name)
    return Library(embedder, collection)


def search(library: Library, query: str, k: int) -> list[Hit]:
    [vector] = library.embedder.embed([query])
    return store.query(library.collection, vector, k)
