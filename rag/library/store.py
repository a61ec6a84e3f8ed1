"""The library store: chunks with their vectors, the documents table, the word index.

``LibraryStore`` is the seam every other module uses; nothing outside this module
sees a chromadb type or Chroma's ``where`` syntax. One implementation, over two
kinds of Chroma client, chosen through ``BACKENDS`` by ``RAG_CHROMA_URL``:

- ``embedded`` (default): Chroma's PersistentClient in ``RAG_INDEX``; the documents
  table is a SQLite file beside it.
- ``http``/``https``: a Chroma server (``chroma run``) that every process and every
  machine shares; the documents table is a small Chroma collection on it.

Chroma holds the chunks and is the source of truth, with the documents table as its
index of complete versions. The SQLite FTS5 word index (rag/library/word_index.py) is local to
each machine and derived: reconciled against the documents table one document
version at a time. Writing a document, under the cross-process writer lock:

1. mark its row dirty; 2. upsert the new version's chunks; 3. record the version;
4. delete the chunks of other versions; 5. mark the row clean; 6. update the word index.

A writer killed anywhere leaves a dirty row, which the next writer sweeps (deleting
chunks of versions that are not recorded); a reader seeing the table change brings
its word index in step when no writer holds the lock, and otherwise leaves it to a
later look. Ids found in the word index are always checked against Chroma, so a
search never returns a chunk that no longer exists.

A full disk (#21): a write starts only with ``RAG_MIN_FREE_MB`` free. If Chroma's files
are damaged anyway (its vector index's metadata pickle cut short), every Chroma error
reaches the user as one sentence that says what to do, ``check`` says the index is
damaged, and ``repair`` deletes the damaged vector index files and embeds again the
chunks left without a vector, from their text in Chroma's own records.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import pickletools
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

import chromadb
import httpx
from chromadb.api.client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaAuthError, ChromaError, InvalidArgumentError

from rag.config import Settings
from rag.errors import RagError
from rag.library.chunks import Chunk
from rag.library.documents import (
    Catalog,
    Document,
    SqliteCatalog,
    Unfinished,
    catalog_path,
    is_abandoned,
    writer_name,
)
from rag.library.locking import WriterLock
from rag.library.word_index import LexicalIndex, lexical_path

__all__ = ["BACKENDS", "CheckReport", "Document", "LibraryStore", "open_store", "source_counts"]

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


class _Server:
    """A Chroma server (``chroma run``), shared by every process and machine."""

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


def _paged_metadata(collection: Any) -> Iterator[tuple[str, dict]]:
    """Every id of a collection with its metadata, a page at a time, so a large
    collection never loads at once."""
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
        yield from zip(got["ids"], got["metadatas"] or [])
        if len(got["ids"]) < _PAGE:
            return
        offset += _PAGE


def _unrecorded(documents: dict[str, Document], source: str, version: str) -> bool:
    """Whether a chunk made from ``version`` of ``source`` belongs to no recorded document."""
    recorded = documents.get(source)
    return (recorded.version if recorded else "") != version


class _ChromaCatalog:
    """The documents table as a small Chroma collection on the server, so every machine
    sees it. One record per document (its id a hash of the path), plus a generation record."""

    _GENERATION = "generation"
    # Chroma wants a vector per record; this table is never searched.
    _UNIT: ClassVar[list[float]] = [1.0]

    def __init__(self, collection: Any) -> None:
        self._c = collection

    @staticmethod
    def _id(source: str) -> str:
        return "doc-" + hashlib.sha256(source.encode()).hexdigest()[:40]

    def _rows(self) -> Iterator[dict]:
        return (m for i, m in _paged_metadata(self._c) if i != self._GENERATION)

    def _get(self, sources: Sequence[str]) -> dict[str, dict]:
        got = self._c.get(ids=[self._id(s) for s in sources], include=["metadatas"])
        return {m["source"]: m for m in got["metadatas"] or []}

    def _put(self, rows: Sequence[dict]) -> None:
        self._c.upsert(
            ids=[self._id(r["source"]) for r in rows] + [self._GENERATION],
            embeddings=[self._UNIT] * (len(rows) + 1),
            metadatas=[*rows, {"value": f"{time.time_ns()}-{writer_name()}"}],
        )

    def documents(self) -> dict[str, Document]:
        return {
            m["source"]: Document(
                m["source"],
                m["version"],
                int(m["chunks"]),
                bool(m["private"]),
                float(m["ingested_at"]),
            )
            for m in self._rows()
            if m.get("version")
        }

    def begin(self, sources: Sequence[str]) -> set[str]:
        rows = self._get(sources)
        blank = {"version": "", "chunks": 0, "private": False, "ingested_at": 0.0}
        self._put(
            [
                {
                    **blank,
                    **rows.get(s, {}),
                    "source": s,
                    "dirty": True,
                    "writer": writer_name(),
                    "since": time.time(),
                }
                for s in sources
            ]
        )
        return {s for s in sources if s not in rows}

    def commit(self, documents: Sequence[Document]) -> None:
        rows = self._get([d.source for d in documents])
        self._put(
            [
                {
                    **rows.get(d.source, {}),
                    "source": d.source,
                    "version": d.version,
                    "chunks": d.chunks,
                    "private": d.private,
                    "ingested_at": d.ingested_at,
                }
                for d in documents
            ]
        )

    def forget(self, sources: Sequence[str]) -> None:
        self._put([{**row, "version": ""} for row in self._get(sources).values()])

    def finish(self, sources: Sequence[str]) -> None:
        rows = self._get(sources)
        gone = [s for s, row in rows.items() if not row.get("version")]
        if gone:
            self._c.delete(ids=[self._id(s) for s in gone])
        self._put([{**row, "dirty": False} for s, row in rows.items() if s not in gone])

    def unfinished(self) -> list[Unfinished]:
        return [
            Unfinished(
                m["source"],
                m.get("version") or None,
                str(m.get("writer", "")),
                float(m.get("since", 0.0)),
            )
            for m in self._rows()
            if m.get("dirty")
        ]

    def generation(self) -> str:
        got = self._c.get(ids=[self._GENERATION], include=["metadatas"])
        return str(got["metadatas"][0]["value"]) if got["ids"] else ""

    def close(self) -> None:
        pass


# -- the store -----------------------------------------------------------------------


def plain_error(exc: Exception, backend: str, index: Path) -> RagError | None:
    """A Chroma server gone, a full disk, or files Chroma cannot read, in a sentence that
    says what to do; None for other failures."""
    text = str(exc)
    what = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    if isinstance(exc, httpx.TransportError) or "Could not connect to a Chroma" in text:
        return RagError(
            f"The Chroma server of the index ({backend}) stopped answering ({what}): start "
            "it again, then run the command again; `rag check --repair` finishes what an "
            "interrupted write began."
        )
    free = _free_mb(index)
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or any(
        w in text.lower() for w in ("disk is full", "no space left")
    )
    if full or (free is not None and free < _LOW_DISK_MB and _is_chroma(exc)):
        return RagError(
            f"The disk of the index {index} is full ({free} MB free; {what}): free some "
            "space, then run `rag check --repair`."
        )
    if _is_chroma(exc) and any(w in text.lower() for w in _DAMAGE_WORDS):
        return IndexDamaged(
            f"The index ({backend}) is damaged, as a full disk can leave it ({what}): "
            "run `rag check --repair` to rebuild it."
        )
    return None


def _free_mb(index: Path) -> int | None:
    try:
        return shutil.disk_usage(index).free // 2**20
    except OSError:
        return None


def _plainly(method: Callable) -> Callable:
    """Chroma's, SQLite's and the network's failures as a sentence that says what to do
    (``ChromaStore._plain``); other errors pass as they are."""

    @functools.wraps(method)
    def call(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RagError:
            raise
        except Exception as exc:
            plain = self._plain(exc)
            if plain is None:
                raise
            raise plain from exc

    return call


def _reopening(method: Callable) -> Callable:
    """Retry a read after reopening the client. The embedded client's per-process caches
    can trail another process's write between our look at the files and the read
    ("Error finding id"); a fresh client reads the files as they are now."""

    @functools.wraps(method)
    def read(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(3):
            try:
                return method(self, *args, **kwargs)
            except ChromaError:
                if attempt == 2:
                    raise
                self._reopen()
        raise AssertionError("unreachable")

    return read


class ChromaStore:
    """Chunks in a Chroma collection, documents in a catalog, words in a local FTS5 index."""

    def __init__(
        self,
        client: _Client,
        index: Path,
        collection: str,
        embedding_model: str,
        bring_in_step: bool = True,
        min_free_mb: int = 0,
    ) -> None:
        self._client = client
        self.backend = client.label
        self._name = collection
        self._model = embedding_model
        self._index = index
        self._min_free_mb = min_free_mb
        index.mkdir(parents=True, exist_ok=True)
        self._guard = threading.RLock()  # the app asks from worker threads
        self._chroma = client.open()
        self._collection = _collection(self._chroma, collection, embedding_model)
        self._catalog = client.catalog(self._chroma, collection, index)
        local = client.local_name(collection)
        self._words = LexicalIndex(lexical_path(index, local))
        self._lock = WriterLock(index / f"{local}.lock")
        self._seen_generation: str | None = None
        try:
            self._adopt_legacy_index()
            if bring_in_step:  # `rag check` looks at the library as it found it
                self._refuse_damaged()
                self.refresh()
        except IndexDamaged:
            if bring_in_step:
                raise
            # `rag check` opens a damaged index to say so, and `--repair` to rebuild it.

    def _refuse_damaged(self) -> None:
        """A command on a damaged index fails at once with what to do, not later with
        Chroma's words (or not at all, where it only lists or finds nothing to change)."""
        damaged = self._client.damaged_files(thorough=False)
        if damaged:
            raise IndexDamaged(
                f"The index ({self.backend}) is damaged: {damaged[0]} was cut short, as a "
                "full disk can leave it. Run `rag check --repair` to rebuild it."
            )

    # failures, in a sentence

    def _plain(self, exc: Exception) -> RagError | None:
        return plain_error(exc, self.backend, self._index)

    def _check_space(self) -> None:
        """Refuse to begin a write that could fill the disk: a write cut short by a full
        disk can leave Chroma's files unreadable."""
        free = _free_mb(self._index)
        if self._min_free_mb and free is not None and free < self._min_free_mb:
            raise RagError(
                f"Only {free} MB are free on the disk of the index {self._index}, less than "
                f"RAG_MIN_FREE_MB={self._min_free_mb}: nothing was written. Free some space "
                "(or lower RAG_MIN_FREE_MB), then run the command again."
            )

    # writing

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._lock.hold():
            if self._lock.depth == 1:  # once per outermost hold
                self._sweep()
            yield

    def write(
        self, document: Document, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
    ) -> None:
        self.write_many([(document, chunks, vectors)])

    @_plainly
    def write_many(
        self, items: Sequence[tuple[Document, Sequence[Chunk], Sequence[Sequence[float]]]]
    ) -> None:
        if not items:
            return
        self._check_space()
        documents = [d for d, _, _ in items]
        sources = [d.source for d in documents]
        chunks = [c for _, cs, _ in items for c in cs]
        vectors = [list(v) for _, _, vs in items for v in vs]
        metadata = [_metadata(c, d) for d, cs, _ in items for c in cs]
        with self.writing():
            new = self._catalog.begin(sources)
            for part in _batches(len(chunks)):
                self._collection.upsert(
                    ids=[c.id for c in chunks[part]],
                    documents=[c.text for c in chunks[part]],
                    embeddings=vectors[part],
                    metadatas=metadata[part],
                )
            self._catalog.commit(documents)
            for d in documents:
                if d.source not in new:  # a new document has no other version to delete
                    self._collection.delete(where=_of_source(d.source, d.version))
            self._catalog.finish(sources)
            self._words.replace_documents([(d.source, d.version, cs) for d, cs, _ in items])

    @_plainly
    def remove(self, sources: Sequence[str]) -> None:
        if not sources:
            return
        with self.writing():
            self._catalog.begin(sources)
            self._catalog.forget(sources)
            for source in sources:
                self._collection.delete(where=_of_source(source))
            self._catalog.finish(sources)
            self._words.drop_documents(list(sources))

    @_plainly
    def _sweep(self) -> None:
        """Finish what dead writers began: delete chunks of versions not recorded.
        Called with the writer lock held."""
        swept = []
        for row in self._catalog.unfinished():
            if is_abandoned(row):
                self._collection.delete(where=_of_source(row.source, row.version))
                self._catalog.finish([row.source])
                swept.append(row.source)
        if swept or self._seen_generation != self._catalog.generation():
            self._reconcile()

    # the word index, derived

    @_reopening
    def _stored_chunks(self, document: Document) -> list[Chunk]:
        where = {"$and": [{"source": document.source}, {"file_hash": document.version}]}
        got = self._collection.get(where=where, include=["documents", "metadatas"])
        return [_chunk(*row) for row in zip(got["ids"], got["documents"], got["metadatas"])]

    def _reconcile(self) -> None:
        """Bring the word index in step with the documents table, one version at a time.
        Called with the writer lock held, so no writer changes a document meanwhile."""
        generation = self._catalog.generation()
        documents = self._catalog.documents()
        have = self._words.versions()
        gone = [s for s in have if s not in documents]
        if gone:
            self._words.drop_documents(gone)
        complete = True
        for source, doc in documents.items():
            if have.get(source) == doc.version:
                continue
            chunks = self._stored_chunks(doc)
            if len(chunks) == doc.chunks:
                self._words.replace_document(source, doc.version, chunks)
            else:
                complete = False  # a writer on another machine is mid-change: look again later
        if complete:
            self._seen_generation = generation

    def _reopen(self) -> None:
        with self._guard:
            self._client.reset()
            self._chroma = self._client.open()
            self._collection = _collection(self._chroma, self._name, self._model)

    @_plainly
    def refresh(self) -> None:
        with self._guard:
            if self._client.changed():
                self._chroma = self._client.open()
                self._collection = _collection(self._chroma, self._name, self._model)
            if self._seen_generation == self._catalog.generation():
                return
            if not self._lock.try_hold():
                return  # a writer is at work and updates the word index itself
            try:
                self._sweep()
            finally:
                self._lock.release()

    @_plainly
    def _adopt_legacy_index(self) -> None:
        """An index written before the documents table: record its complete documents
        once, from the chunks' metadata (their hash and count)."""
        if self._catalog.generation() or self._collection.count() == 0:
            return
        with self._lock.hold():
            if self._catalog.generation():
                return
            found: dict[str, list[dict]] = {}
            for _, meta in self._all_metadata():
                found.setdefault(str(meta["source"]), []).append(meta)
            self._catalog.begin(list(found))
            complete = []
            for source, metas in found.items():
                hashes = {str(m.get("file_hash", "")) for m in metas}
                first = metas[0]
                if len(hashes) == 1 and len(metas) == int(first.get("chunk_count", -1)):
                    complete.append(
                        Document(
                            source,
                            hashes.pop(),
                            len(metas),
                            bool(first.get("private")),
                            time.time(),
                        )
                    )
            self._catalog.commit(complete)
            self._sweep()

    # reading

    @_plainly
    @_reopening
    def nearest(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        if k <= 0 or sources == [] or self._collection.count() == 0:
            return []
        where = {"source": {"$in": list(sources)}} if sources is not None else None
        got = self._collection.query(
            query_embeddings=[list(vector)], n_results=k, where=where, include=["distances"]
        )
        return [(id_, 1.0 - dist) for id_, dist in zip(got["ids"][0], got["distances"][0])]

    def keyword(
        self, query: str, k: int, sources: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        return self._words.search(query, k, sources)

    def keyword_scores(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        return self._words.scores(query, ids)

    @_plainly
    @_reopening
    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[Chunk, list[float]]]:
        out: dict[str, tuple[Chunk, list[float]]] = {}
        for part in _batches(len(ids)):
            got = self._collection.get(
                ids=list(ids[part]), include=["documents", "metadatas", "embeddings"]
            )
            for id_, text, meta, vector in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"]
            ):
                out[id_] = (_chunk(id_, text, meta), list(vector))
        return out

    @_plainly
    def documents(self) -> dict[str, Document]:
        return self._catalog.documents()

    @_plainly
    def document_chunks(self, source: str) -> list[Chunk]:
        document = self._catalog.documents().get(source)
        if document is None:
            return []
        return sorted(self._stored_chunks(document), key=lambda c: c.index)

    @_plainly
    @_reopening
    def count(self) -> int:
        return self._collection.count()

    def _all_metadata(self) -> Iterator[tuple[str, dict]]:
        return _paged_metadata(self._collection)

    # checking

    @_plainly
    def check(self) -> CheckReport:
        """Compare every chunk id on both sides, and see that each has its vector (the one
        operation that costs per chunk). Taken under the writer lock, so a running ingest
        is seen between its batches."""
        with self._lock.hold():
            return self._check()

    def _check(self, vectors: bool = True) -> CheckReport:
        documents = self._catalog.documents()
        report = CheckReport(self.backend, documents=len(documents))
        damaged = self._client.damaged_files()
        if damaged:
            report.damaged = (
                f"Chroma's vector index cannot be read: {', '.join(map(str, damaged))} "
                "was cut short (a full disk?); `rag check --repair` rebuilds it."
            )
            return report
        try:
            self._compare(report, documents, vectors)
        except Exception as exc:
            plain = self._plain(exc)
            if not isinstance(plain, IndexDamaged):
                raise
            report.damaged = str(plain)
        return report

    def _compare(self, report: CheckReport, documents: dict[str, Document], vectors: bool) -> None:
        chroma: dict[str, tuple[str, str]] = {
            id_: (str(m["source"]), str(m.get("file_hash", ""))) for id_, m in self._all_metadata()
        }
        words = self._words.ids()
        report.chunks_in_chroma = len(chroma)
        report.chunks_in_word_index = len(words)
        report.only_in_chroma = sorted(set(chroma) - words)
        report.only_in_word_index = sorted(words - set(chroma))
        per_version = Counter(chroma.values())
        versions = self._words.versions()
        stray = {s for s, v in chroma.values() if _unrecorded(documents, s, v)}
        report.versions_disagree = sorted(
            {
                s
                for s, d in documents.items()
                if versions.get(s) != d.version or per_version[(s, d.version)] != d.chunks
            }
            | stray
            | (set(versions) - set(documents))
        )
        report.unfinished = sorted(r.source for r in self._catalog.unfinished())
        if vectors:
            report.without_vector = self._without_vector(sorted(chroma))

    def _without_vector(self, ids: list[str]) -> list[str]:
        """The ids whose vector Chroma cannot find, a page at a time (halved where one
        is missing, down to the ids themselves)."""
        self._reopen()  # no vector cached by this process before the last write
        missing: list[str] = []
        for part in _batches(len(ids), _PAGE):
            missing += self._lacking(ids[part])
        return missing

    def _lacking(self, ids: list[str]) -> list[str]:
        try:
            self._collection.get(ids=ids, include=["embeddings"])
            return []
        except ChromaError as exc:
            if "finding id" not in str(exc).lower():
                raise
        if len(ids) == 1:
            return ids
        half = len(ids) // 2
        return self._lacking(ids[:half]) + self._lacking(ids[half:])

    @_plainly
    def repair(self, embed: Embed | None = None) -> CheckReport:
        """Delete vector index files Chroma cannot read, embed again (with ``embed``) the
        chunks left without a vector; sweep what writers left, drop chunks of no recorded
        version, rebuild the word index where it disagrees; then check again."""
        try:
            with self._lock.hold():
                rebuilt = self._rebuild_vectors(embed)
            report = self._repair_records()
        except IndexDamaged as exc:
            raise RagError(
                f"The index could not be repaired ({exc.__cause__}): ingest the documents "
                "again into a new index (--index or RAG_INDEX)."
            ) from exc
        report.rebuilt = rebuilt
        return report

    def _rebuild_vectors(self, embed: Embed | None) -> int:
        for damaged in self._client.damaged_files():
            shutil.rmtree(damaged.parent)  # Chroma starts that index afresh from its log
        ids = [id_ for id_, _ in self._all_metadata()]  # Chroma's records hold every chunk
        missing = self._without_vector(ids)
        if not missing or embed is None:
            return 0  # a check after this says what is still missing
        self._check_space()
        for part in _batches(len(missing)):
            got = self._collection.get(ids=missing[part], include=["documents", "metadatas"])
            self._collection.upsert(
                ids=got["ids"],
                documents=got["documents"],
                metadatas=got["metadatas"],
                embeddings=[list(v) for v in embed(list(got["documents"] or []))],
            )
        return len(missing)

    def _repair_records(self) -> CheckReport:
        with self.writing():
            documents = self._catalog.documents()
            stray = [
                id_
                for id_, m in self._all_metadata()
                if _unrecorded(documents, str(m["source"]), str(m.get("file_hash", "")))
            ]
            for part in _batches(len(stray)):
                self._collection.delete(ids=stray[part])
            report = self._check(vectors=False)
            if report.versions_disagree or report.only_in_word_index or report.only_in_chroma:
                self._words.drop_documents(list(self._words.versions()))
                self._words.delete(report.only_in_word_index)
                self._seen_generation = None
                self._reconcile()
            return self._check()

    def close(self) -> None:
        self._words.close()
        self._catalog.close()


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


def _server(settings: Settings, embedding_model: str, bring_in_step: bool) -> LibraryStore:
    token = settings.chroma_token.get_secret_value() if settings.chroma_token else None
    client = _Server(str(settings.chroma_url), token)
    return ChromaStore(
        client,
        settings.index,
        settings.collection,
        embedding_model,
        bring_in_step,
        settings.min_free_mb,
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


def source_counts(store: LibraryStore) -> Counter[str]:
    """Chunks per document, from the documents table."""
    return Counter({d.source: d.chunks for d in store.documents().values()})
