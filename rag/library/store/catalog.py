"""The documents table kept as a small Chroma collection, for a Chroma server that
every machine shares (the embedded backend keeps it in SQLite beside the index)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from rag.library.documents import (
    Document,
    Unfinished,
    writer_name,
)
from rag.library.store.protocol import _PAGE


def _paged_metadata(collection: Any, where: dict | None = None) -> Iterator[tuple[str, dict]]:
    """Every id of a collection (or those ``where`` selects) with its metadata, a page
    at a time, so a large collection never loads at once."""
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=_PAGE, offset=offset, where=where)
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
        # Every write asks: the server selects the dirty rows, rather than this process
        # reading every document's row over HTTP each time.
        return [
            Unfinished(
                m["source"],
                m.get("version") or None,
                str(m.get("writer", "")),
                float(m.get("since", 0.0)),
            )
            for _, m in _paged_metadata(self._c, where={"dirty": True})
        ]

    def generation(self) -> str:
        got = self._c.get(ids=[self._GENERATION], include=["metadatas"])
        return str(got["metadatas"][0]["value"]) if got["ids"] else ""

    def close(self) -> None:
        pass
