"""Chroma's two clients (embedded PersistentClient, a server over HTTP) behind one
small protocol, and how chunks and their metadata are stored in a collection."""

from __future__ import annotations

import contextlib
import io
import pickletools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import chromadb
from chromadb.api.client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaAuthError, InvalidArgumentError, NotFoundError

from rag.errors import RagError
from rag.library.chunks import Chunk
from rag.library.documents import (
    Catalog,
    Document,
    SqliteCatalog,
    catalog_path,
)
from rag.library.store.catalog import _ChromaCatalog
from rag.library.store.protocol import _FIELDS, BATCH

# -- chunk metadata ----------------------------------------------------------------


def _metadata(chunk: Chunk, document: Document) -> dict[str, str | int | float | bool]:
    meta: dict[str, str | int | float | bool] = {
        "source": chunk.source,
        "index": chunk.index,
        "page": chunk.page or 0,  # Chroma metadata cannot hold None
        "heading": chunk.heading,
        "start": chunk.start,
        "end": chunk.end,
        "file_hash": document.version,
    }
    if document.private:
        meta["private"] = True
    return {**chunk.extra, **meta}


def _chunk(id_: str, text: str, meta: dict) -> Chunk:
    extra = {k: v for k, v in meta.items() if k not in _FIELDS}
    return Chunk(
        id=id_,
        text=text,
        source=str(meta["source"]),
        index=int(meta.get("index", 0)),
        page=int(meta.get("page") or 0) or None,
        heading=str(meta.get("heading", "")),
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
        extra=extra,
    )


def _batches(n: int, size: int = BATCH) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, start + size)


def _of_source(source: str, not_version: str | None = None) -> dict:
    if not_version is None:
        return {"source": source}
    return {"$and": [{"source": source}, {"file_hash": {"$ne": not_version}}]}


# -- Chroma clients ------------------------------------------------------------------


class _Client(Protocol):
    """How one kind of Chroma is reached, and where its local files go."""

    label: str
    words_cached: bool  # the local word index caches what other machines write

    def open(self) -> Any: ...
    def changed(self) -> bool: ...
    def reset(self) -> None: ...
    def local_name(self, collection: str) -> str: ...
    def catalog(self, client: Any, collection: str, index: Path) -> Catalog: ...
    def damaged_files(self, thorough: bool = True) -> list[Path]: ...


_CHROMA_FILES = ("chroma.sqlite3", "chroma.sqlite3-wal")


class _Embedded:
    """Chroma's PersistentClient on a local folder.

    The embedded client caches its vector index per process: after another process
    writes, ``count`` and ``get`` see the change but ``query`` does not. Reopening
    after clearing Chroma's per-process cache costs about 10 ms, so ``changed``
    compares the index files' stat (two calls) and reopening happens only then.
    """

    words_cached = False

    def __init__(self, index: Path) -> None:
        self.index = index
        self.label = f"embedded {index}"
        self._seen = self._signature()

    def _signature(self) -> tuple[tuple[int, int], ...]:
        def stat(path: Path) -> tuple[int, int]:
            try:
                st = path.stat()
            except FileNotFoundError:
                return (0, 0)
            return (st.st_mtime_ns, st.st_size)

        return tuple(stat(self.index / name) for name in _CHROMA_FILES)

    def open(self) -> Any:
        self.index.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(self.index), settings=ChromaSettings(anonymized_telemetry=False)
        )
        self._seen = self._signature()
        return client

    def changed(self) -> bool:
        if self._signature() == self._seen:
            return False
        self.reset()
        return True

    def reset(self) -> None:
        # Clients already open elsewhere in the process (a chat's uploads) keep working.
        SharedSystemClient.clear_system_cache()

    def local_name(self, collection: str) -> str:
        return collection

    def catalog(self, client: Any, collection: str, index: Path) -> Catalog:
        return SqliteCatalog(catalog_path(index, collection))

    def damaged_files(self, thorough: bool = True) -> list[Path]:
        """Vector index files Chroma cannot read back: a metadata pickle cut short, as a
        full disk leaves it ("Error deserializing pickle file"). Not ``thorough``: only
        its last byte is read, which must be the pickle's STOP."""
        pickles = self.index.glob("*/index_metadata.pickle")
        return sorted(p for p in pickles if not (_whole(p) if thorough else _ends(p)))


def _whole(pickle: Path) -> bool:
    """Whether a pickle runs to its STOP opcode; read, never loaded (nothing is run)."""
    try:
        for _ in pickletools.genops(io.BytesIO(pickle.read_bytes())):
            pass
    except (ValueError, OSError):
        return False
    return True


def _ends(pickle: Path) -> bool:
    try:
        with pickle.open("rb") as f:
            f.seek(-1, io.SEEK_END)
            return f.read(1) == b"."
    except OSError:  # empty (seeking before the start), or gone meanwhile
        return False


_KEPT: dict[tuple[str, str], Any] = {}


class _Server:
    """A Chroma server (``chroma run``), shared by every process and machine."""

    words_cached = True

    def __init__(self, url: str, token: str | None) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise RagError(f"RAG_CHROMA_URL={url!r} is not a URL like http://127.0.0.1:8000.")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 8000)
        self.ssl = parts.scheme == "https"
        self.headers = {"Authorization": f"Bearer {token}"} if token else None
        self.label = f"server {url}"

    def open(self) -> Any:
        try:
            return chromadb.HttpClient(
                host=self.host,
                port=self.port,
                ssl=self.ssl,
                headers=self.headers,
                settings=ChromaSettings(anonymized_telemetry=False),
            )
        except ChromaAuthError as exc:
            raise RagError(
                f"The Chroma server at {self.url} refused this client ({exc}): set "
                "RAG_CHROMA_TOKEN to the token it requires."
            ) from exc
        except Exception as exc:
            raise RagError(
                f"No Chroma server answers at {self.url} ({exc}): start one with "
                f"`chroma run --path DIR --host {self.host} --port {self.port}` "
                "or unset RAG_CHROMA_URL to use the embedded index."
            ) from exc

    def changed(self) -> bool:
        return False  # every query goes to the server, which sees every write

    def reset(self) -> None:
        pass

    def local_name(self, collection: str) -> str:
        # The word index is a per-server cache: two servers never share one.
        return f"{collection}@{self.host}-{self.port}"

    def damaged_files(self, thorough: bool = True) -> list[Path]:
        return []  # the server's files are its own to look after

    def _kept(self) -> Any:
        """One client per server and token for the process: a chat asks whether it has
        files before each question, and making a client costs more than asking."""
        key = (self.url, str(self.headers))
        if key not in _KEPT:
            _KEPT[key] = self.open()
        return _KEPT[key]

    def has(self, name: str) -> bool:
        try:
            self._kept().get_collection(name)
        except NotFoundError:
            return False
        return True

    def drop(self, names: list[str]) -> None:
        client = self._kept()
        for name in names:
            with contextlib.suppress(NotFoundError):  # gone already: what was asked
                client.delete_collection(name)

    def catalog(self, client: Any, collection: str, index: Path) -> Catalog:
        return _ChromaCatalog(_collection(client, f"{collection}-documents", None))


def _collection(client: Any, name: str, embedding_model: str | None) -> Any:
    metadata = {"embedding_model": embedding_model} if embedding_model else None
    try:
        collection = client.get_or_create_collection(
            name,
            embedding_function=None,  # we embed ourselves; Chroma's default downloads a model
            configuration={"hnsw": {"space": "cosine"}},
            metadata=metadata,
        )
    except InvalidArgumentError as exc:
        raise RagError(
            f"{name!r} cannot name a collection: use 3 to 512 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit (RAG_COLLECTION)."
        ) from exc
    built_with = (collection.metadata or {}).get("embedding_model")
    if embedding_model and built_with and built_with != embedding_model:
        raise RagError(
            f"The collection {name!r} was built with the embedding model {built_with!r}, "
            f"not {embedding_model!r}: set RAG_EMBEDDING_MODEL={built_with} or use another "
            "--index or --collection."
        )
    return collection
