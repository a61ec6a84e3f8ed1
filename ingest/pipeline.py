"""Ingesting files and folders into the index, incrementally and crash-safely.

Every chunk id is derived from (file path, content hash, position), so running
the same ingest twice writes the same ids. A changed file's new chunks are
written before its old ones are deleted: a run killed at any point leaves
either the old or a mixed state, and the mixed state is detected (more than one
hash, or fewer chunks than recorded) and repaired by the next run. The lexical
index is written first and cleaned last (rag/library.py), so it can only hold
extra ids after a crash, which opening the library repairs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from ingest.chunking import Piece, chunk_sections
from ingest.loaders import ReadOptions, Unreadable, is_supported, load
from ingest.summary import Summary
from rag import library as lib
from rag import store
from rag.chunks import Chunk
from rag.embeddings import Embedder
from rag.errors import RagError
from rag.library import Library

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """What to ingest: files to read, and folders whose vanished files are pruned."""

    files: list[Path]
    folders: list[Path]
    unsupported: list[Path]


def _hidden(name: str) -> bool:
    return name.startswith(".")


def discover(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> Target:
    excluded = {p.resolve() for p in exclude}
    files: set[Path] = set()
    folders: list[Path] = []
    unsupported: list[Path] = []
    for raw in paths:
        path = raw.expanduser().resolve()
        if path.is_dir():
            folders.append(path)
            found = _walk(path, excluded)
        elif path.is_file():
            found = [path]
        else:
            raise RagError(f"No such file or folder: {raw}")
        for file in found:
            (files.add(file) if is_supported(file) else unsupported.append(file))
    return Target(sorted(files), folders, unsupported)


def _walk(folder: Path, excluded: set[Path]) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        # Hidden folders (.git, .venv) and the index itself are never documents.
        dirs[:] = sorted(d for d in dirs if not _hidden(d) and (here / d) not in excluded)
        yield from (here / n for n in sorted(names) if not _hidden(n))


def content_hash(path: Path, options: str = "") -> str:
    """The file's bytes and the options that shape its chunks, hashed together:
    a file ingested again with another chunk size or privacy is a changed file."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256")
    digest.update(options.encode())
    return digest.hexdigest()


def chunk_id(source: str, file_hash: str, index: int) -> str:
    return hashlib.sha256(f"{source}\n{file_hash}\n{index}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Prepared:
    path: Path
    file_hash: str
    chunks: list[Chunk] | None = None  # None: unchanged since the last ingest
    error: str | None = None
    pages_without_text: int = 0
    engine: str = ""
    ocr_pages: int = 0
    ocr_seconds: float = 0.0


@dataclass
class Ingestor:
    library: Library
    _: KW_ONLY
    chunk_tokens: int | None = None  # None: the library's settings decide
    chunk_overlap: int | None = None
    extra_metadata: dict[str, str | int | float | bool] = field(default_factory=dict)
    batch_chunks: int = 256
    read_options: ReadOptions | None = None  # None: the library's settings decide

    def __post_init__(self) -> None:
        settings = self.library.settings
        if self.chunk_tokens is None:
            self.chunk_tokens = settings.chunk_tokens
        if self.chunk_overlap is None:
            self.chunk_overlap = settings.chunk_overlap
        if self.read_options is None:
            self.read_options = ReadOptions(settings.ocr, settings.max_file_mb * 2**20)

    @property
    def options(self) -> str:
        extra = json.dumps(self.extra_metadata, sort_keys=True)
        # A scan ingested without OCR must be read again once OCR is on.
        ocr = "" if self.read_options.ocr else "/no-ocr"
        return f"{self.chunk_tokens}/{self.chunk_overlap}/{extra}{ocr}"

    @property
    def embedder(self) -> Embedder:
        return self.library.embedder

    def check_chunk_size(self) -> None:
        # Asked only when something must be chunked: that is when the model loads.
        room = self.embedder.max_tokens - 2  # [CLS] and [SEP]
        if self.chunk_tokens > room:
            raise RagError(
                f"RAG_CHUNK_TOKENS={self.chunk_tokens} exceeds what {self.embedder.name} "
                f"reads ({room} tokens): set it to {room} or less."
            )

    def prepare(self, path: Path, stored: store.StoredFile | None) -> Prepared:
        try:
            file_hash = content_hash(path, self.options)
            if stored and stored.complete and stored.content_hash == file_hash:
                return Prepared(path, file_hash)
            loaded = load(path, self.read_options)
        except (Unreadable, OSError) as exc:
            return Prepared(path, "", error=str(exc))
        self.check_chunk_size()
        pieces = chunk_sections(
            loaded.sections, self.chunk_tokens, self.chunk_overlap, self.embedder.count_tokens
        )
        chunks = self._chunks(str(path), file_hash, pieces)
        return Prepared(path, file_hash, chunks, pages_without_text=loaded.pages_without_text,
                        engine=loaded.engine, ocr_pages=loaded.ocr_pages,
                        ocr_seconds=loaded.ocr_seconds)

    def _chunks(self, source: str, file_hash: str, pieces: list[Piece]) -> list[Chunk]:
        extra = {**self.extra_metadata, "file_hash": file_hash, "chunk_count": len(pieces)}
        return [
            Chunk(
                id=chunk_id(source, file_hash, i),
                text=p.text,
                source=source,
                index=i,
                page=p.page,
                heading=p.heading,
                start=p.start,
                end=p.end,
                extra={**extra, "ocr": True} if p.ocr else extra,
            )
            for i, p in enumerate(pieces)
        ]

    def write(self, batch: list[Prepared], stored: dict[str, store.StoredFile]) -> int:
        """Embed and store new chunks, then drop the files' superseded chunks."""
        chunks = [c for p in batch for c in p.chunks or []]
        if chunks:
            lib.write(self.library, chunks, self.embedder.embed([c.text for c in chunks]))
        keep = {c.id for c in chunks}
        stale = [
            id_
            for p in batch
            if (old := stored.get(str(p.path)))
            for id_ in old.chunk_ids
            if id_ not in keep
        ]
        lib.remove(self.library, stale)
        return len(chunks)

    def run(self, target: Target, prune: bool = True, progress: bool | None = None) -> Summary:
        started = time.perf_counter()
        summary = Summary(unsupported=[str(p) for p in target.unsupported])
        stored = store.stored_files(self.library.collection)
        bar = tqdm(
            total=len(target.files),
            unit="file",
            disable=not (sys.stderr.isatty() if progress is None else progress),
            file=sys.stderr,
        )
        pending: list[Prepared] = []
        waiting = 0  # chunks in pending
        with bar:
            work = lambda path: self.prepare(path, stored.get(str(path)))  # noqa: E731
            for prepared in prefetch(work, target.files):
                self._record(prepared, stored, summary)
                if prepared.chunks is not None:
                    pending.append(prepared)
                    waiting += len(prepared.chunks)
                if waiting >= self.batch_chunks:
                    summary.chunks_written += self.write(pending, stored)
                    pending, waiting = [], 0
                bar.update()
                rate = summary.chunks_written / max(time.perf_counter() - started, 1e-6)
                bar.set_postfix_str(f"{summary.chunks_written} chunks, {rate:.0f} chunks/s"
                                    + summary.ocr_postfix(), refresh=False)
            summary.chunks_written += self.write(pending, stored)
        if prune:
            summary.removed = self.prune(target, stored)
        summary.seconds = time.perf_counter() - started
        return summary

    @staticmethod
    def _record(prepared: Prepared, stored: dict[str, store.StoredFile], summary: Summary) -> None:
        name = str(prepared.path)
        if prepared.error is not None:
            summary.failed[name] = prepared.error
        elif prepared.chunks is None:
            summary.unchanged.append(name)
        else:
            (summary.updated if name in stored else summary.added).append(name)
        if prepared.pages_without_text:
            summary.pages_without_text[name] = prepared.pages_without_text
        summary.record_reading(name, prepared.engine, prepared.ocr_pages, prepared.ocr_seconds)

    def prune(self, target: Target, stored: dict[str, store.StoredFile]) -> list[str]:
        """Forget indexed files that have vanished from the folders just ingested."""
        present = {str(p) for p in target.files}
        gone = [
            source
            for source in stored
            if source not in present
            and any(Path(source).is_relative_to(folder) for folder in target.folders)
            and not Path(source).is_file()
        ]
        lib.remove(self.library, [i for s in gone for i in stored[s].chunk_ids])
        return sorted(gone)


def forget(library: Library, paths: Iterable[Path]) -> list[str]:
    """Remove documents (or every document under a folder) from the index."""
    stored = store.stored_files(library.collection)
    wanted = [p.expanduser().resolve() for p in paths]
    gone = sorted(s for s in stored if any(Path(s) == w or Path(s).is_relative_to(w) for w in wanted))
    lib.remove(library, [i for s in gone for i in stored[s].chunk_ids])
    return gone


def prefetch(fn: Callable[[T], R], items: Iterable[T], ahead: int = 8) -> Iterator[R]:
    """``map(fn, items)`` run one step ahead in a thread, so reading overlaps embedding."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read") as pool:
        window: deque[Future[R]] = deque()
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) > ahead:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
