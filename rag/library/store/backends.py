"""Choosing a backend by ``RAG_CHROMA_URL`` and opening the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

from rag.config import Settings
from rag.errors import RagError
from rag.library.locking import Lock
from rag.library.shared_lock import SharedWriterLock
from rag.library.store.chroma import ChromaStore
from rag.library.store.clients import _Embedded, _Server
from rag.library.store.failures import plain_error
from rag.library.store.protocol import LibraryStore

# -- choosing a backend ----------------------------------------------------------------


def _embedded(settings: Settings, embedding_model: str, bring_in_step: bool) -> LibraryStore:
    return ChromaStore(
        _Embedded(settings.index),
        settings.index,
        settings.collection,
        embedding_model,
        bring_in_step,
        settings.min_free_mb,
    )


def _server_client(settings: Settings) -> _Server:
    token = settings.chroma_token.get_secret_value() if settings.chroma_token else None
    return _Server(str(settings.chroma_url), token)


def shared_lock(settings: Settings) -> Lock | None:
    """PostgreSQL's advisory lock for a library on a Chroma server when
    ``RAG_DATABASE_URL`` names PostgreSQL: writers on every machine then take the same
    lock. None otherwise (the file lock of the index folder, as on one machine)."""
    url = settings.database_url or ""
    if not settings.chroma_url or url.split("://", 1)[0].split("+", 1)[0] not in _POSTGRES:
        return None
    return SharedWriterLock(url, f"{settings.chroma_url.rstrip('/')}/{settings.collection}")


_POSTGRES = ("postgres", "postgresql")


def _server(settings: Settings, embedding_model: str, bring_in_step: bool) -> LibraryStore:
    return ChromaStore(
        _server_client(settings),
        settings.index,
        settings.collection,
        embedding_model,
        bring_in_step,
        settings.min_free_mb,
        shared_lock(settings),
    )


BACKENDS: dict[str, Callable[[Settings, str, bool], LibraryStore]] = {
    "embedded": _embedded,
    "http": _server,
    "https": _server,
}


def backend_of(settings: Settings) -> str:
    return urlsplit(settings.chroma_url).scheme if settings.chroma_url else "embedded"


def open_store(
    settings: Settings, embedding_model: str | None = None, bring_in_step: bool = True
) -> LibraryStore:
    """The library's store as the settings choose; ``embedding_model`` names the model the
    collection must have been built with (the settings' by default). ``bring_in_step``
    False leaves the word index as found (for ``rag check``)."""
    name = backend_of(settings)
    if name not in BACKENDS:
        raise RagError(f"RAG_CHROMA_URL={settings.chroma_url!r}: use http:// or https://.")
    try:
        return BACKENDS[name](settings, embedding_model or settings.embedding_model, bring_in_step)
    except RagError:
        raise
    except Exception as exc:
        plain = plain_error(exc, settings.chroma_url or str(settings.index), settings.index)
        if plain is None:
            raise
        raise plain from exc


def library_exists(settings: Settings) -> bool:
    """Whether the library the settings name holds anything, without creating it."""
    if backend_of(settings) == "embedded":
        return (settings.index / "chroma.sqlite3").is_file()
    return _server_client(settings).has(f"{settings.collection}-documents")


def drop_library(settings: Settings) -> None:
    """Delete a whole library from a Chroma server: its chunks and its documents table.
    (An embedded library is its folder, which the caller deletes.)"""
    if backend_of(settings) != "embedded":
        _server_client(settings).drop([settings.collection, f"{settings.collection}-documents"])


def source_counts(store: LibraryStore) -> Counter[str]:
    """Chunks per document, from the documents table."""
    return Counter({d.source: d.chunks for d in store.documents().values()})
