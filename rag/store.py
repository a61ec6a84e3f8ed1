"""The Chroma collection that holds chunks, their vectors and metadata.

Chroma is used directly: these functions only fix the few things every caller
must get right (cosine space, our own vectors, batch limits, metadata types).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import chromadb
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import InvalidArgumentError

from rag.chunks import Chunk
from rag.errors import RagError

_FIELDS = ("source", "index", "page", "heading", "start", "end")
# Chroma rejects batches above client.get_max_batch_size() (5461 for SQLite in 1.5);
# a fixed, smaller batch keeps every call under it without reaching into the client.
BATCH = 4096


def open_collection(index: Path, name: str, embedding_model: str) -> Collection:
    """Open (or create) the collection, refusing one built with another embedder."""
    index.mkdir(parents=True, exist_ok=True)
    client = chromadb.PersistentClient(
        path=str(index), settings=ChromaSettings(anonymized_telemetry=False)
    )
    try:
        collection = client.get_or_create_collection(
            name,
            embedding_function=None,  # we embed ourselves; Chroma's default downloads a model
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": embedding_model},
        )
    except InvalidArgumentError as exc:
        raise RagError(
            f"{name!r} cannot name a collection: use 3 to 512 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit (RAG_COLLECTION)."
        ) from exc
    built_with = (collection.metadata or {}).get("embedding_model")
    if built_with and built_with != embedding_model:
        raise RagError(
            f"The index at {index} was built with the embedding model {built_with!r}, "
            f"not {embedding_model!r}: set RAG_EMBEDDING_MODEL={built_with} or use another --index."
        )
    return collection


def _metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    meta: dict[str, str | int | float | bool] = {
        "source": chunk.source,
        "index": chunk.index,
        "page": chunk.page or 0,  # Chroma metadata cannot hold None
        "heading": chunk.heading,
        "start": chunk.start,
        "end": chunk.end,
    }
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


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, start + size)


def upsert(collection: Collection, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
    for part in _batches(len(chunks), BATCH):
        batch = chunks[part]
        collection.upsert(
            ids=[c.id for c in batch],
            documents=[c.text for c in batch],
            embeddings=[list(v) for v in vectors[part]],
            metadatas=[_metadata(c) for c in batch],
        )


def delete(collection: Collection, ids: Sequence[str]) -> None:
    for part in _batches(len(ids), BATCH):
        collection.delete(ids=list(ids[part]))


def all_metadata(collection: Collection, page_size: int = 5000) -> Iterator[tuple[str, dict]]:
    """Every chunk id with its metadata, paged so a large index never loads at once."""
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=page_size, offset=offset)
        yield from zip(got["ids"], got["metadatas"] or [])
        if len(got["ids"]) < page_size:
            return
        offset += page_size


def source_counts(collection: Collection) -> Counter[str]:
    return Counter(str(meta["source"]) for _, meta in all_metadata(collection))


def nearest(
    collection: Collection, vector: Sequence[float], k: int, where: dict | None = None
) -> list[tuple[str, float]]:
    """The ``k`` nearest chunk ids with their cosine similarity, best first."""
    if k <= 0 or collection.count() == 0:
        return []
    got = collection.query(
        query_embeddings=[list(vector)], n_results=k, where=where, include=["distances"]
    )
    return [(id_, 1.0 - dist) for id_, dist in zip(got["ids"][0], got["distances"][0])]


def fetch(collection: Collection, ids: Sequence[str]) -> dict[str, tuple[Chunk, list[float]]]:
    """Chunks and their vectors by id; ids that no longer exist are absent."""
    out: dict[str, tuple[Chunk, list[float]]] = {}
    for part in _batches(len(ids), BATCH):
        got = collection.get(
            ids=list(ids[part]), include=["documents", "metadatas", "embeddings"]
        )
        for id_, text, meta, vector in zip(
            got["ids"], got["documents"], got["metadatas"], got["embeddings"]
        ):
            out[id_] = (_chunk(id_, text, meta), vector)
    return out


def chunks(collection: Collection, ids: Sequence[str]) -> list[Chunk]:
    """The chunks with these ids that exist, without their vectors."""
    got = [
        collection.get(ids=list(ids[part]), include=["documents", "metadatas"])
        for part in _batches(len(ids), BATCH)
    ]
    return [
        _chunk(id_, text, meta)
        for g in got
        for id_, text, meta in zip(g["ids"], g["documents"], g["metadatas"])
    ]


def all_ids(collection: Collection, page_size: int = 20000) -> set[str]:
    ids: set[str] = set()
    offset = 0
    while True:
        got = collection.get(include=[], limit=page_size, offset=offset)["ids"]
        ids.update(got)
        if len(got) < page_size:
            return ids
        offset += page_size


@dataclass(frozen=True)
class StoredFile:
    """What the index holds for one source file."""

    content_hash: str
    chunk_ids: frozenset[str]
    complete: bool  # every chunk of one version of the file is present


def stored_files(collection: Collection) -> dict[str, StoredFile]:
    ids: dict[str, set[str]] = {}
    hashes: dict[str, set[str]] = {}
    expected: dict[str, int] = {}
    for id_, meta in all_metadata(collection):
        source = str(meta["source"])
        ids.setdefault(source, set()).add(id_)
        hashes.setdefault(source, set()).add(str(meta.get("file_hash", "")))
        expected[source] = int(meta.get("chunk_count", -1))
    return {
        source: StoredFile(
            content_hash=next(iter(hashes[source])) if len(hashes[source]) == 1 else "",
            chunk_ids=frozenset(chunk_ids),
            complete=len(hashes[source]) == 1 and len(chunk_ids) == expected[source],
        )
        for source, chunk_ids in ids.items()
    }
