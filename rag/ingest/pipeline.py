"""Ingesting files and folders into the index, incrementally and crash-safely.

Every chunk id is derived from (file path, content hash, position), so running
the same ingest twice writes the same ids. Whether a file changed is read from
the documents table (one row per document, rag/library/documents.py); the store writes
each document version whole, and a run killed at any point is finished by the
next writer (rag/library/store/). Files are read and embedded outside the writer lock,
and each batch is stored under it, so readers and other ingests wait for one
batch at most.

Files are read in a worker process with a memory cap and a time limit
(rag/ingest/sandbox.py): whatever a file does to its reader, from an exception to a
decompression bomb, is that file's failure with its reason, and the run goes on.

Private status is sticky: a document ingested as private stays private when
ingested again without saying so; only an explicit ``private=False``
(``rag ingest --shareable``) makes it shareable.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from rag.embeddings.embedder import Embedder
from rag.errors import RagError
from rag.ingest.chunking import Piece, chunk_sections
from rag.ingest.loaders import Loaded, ReadOptions, Unreadable, is_supported, load
from rag.ingest.sandbox import Limits, Sandbox
from rag.ingest.summary import Summary
from rag.library.chunks import Chunk
from rag.library.documents import Document
from rag.library.live import Library

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
        found: Iterable[Path]
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
    private: bool = False
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
    limits: Limits | None = None  # of the reader's process; None: the settings decide
    # True: private; False: shareable; None: as stored (new documents are shareable).
    private: bool | None = None

    def __post_init__(self) -> None:
        settings = self.library.settings
        if "private" in self.extra_metadata:  # the former way of asking
            extra = dict(self.extra_metadata)
            self.private = bool(extra.pop("private"))
            self.extra_metadata = extra
        if self.chunk_tokens is None:
            self.chunk_tokens = settings.chunk_tokens
        if self.chunk_overlap is None:
            self.chunk_overlap = settings.chunk_overlap
        if self.read_options is None:
            self.read_options = ReadOptions(
                settings.ocr, settings.max_file_mb * 2**20, settings.ocr_max_pages
            )
        if self.limits is None:
            self.limits = Limits(settings.read_memory_mb, settings.read_timeout_s)

    def options(self, private: bool) -> str:
        # Same text as before the documents table, so existing indexes stay unchanged;
        # a scan ingested without OCR must be read again once OCR is on.
        extra = {**self.extra_metadata, **({"private": True} if private else {})}
        assert self.read_options is not None  # set in __post_init__
        ocr = "" if self.read_options.ocr else "/no-ocr"
        return f"{self.chunk_tokens}/{self.chunk_overlap}/{json.dumps(extra, sort_keys=True)}{ocr}"

    def is_private(self, stored: Document | None) -> bool:
        if self.private is not None:
            return self.private
        return bool(stored and stored.private)

    @property
    def embedder(self) -> Embedder:
        return self.library.embedder

    def check_chunk_size(self) -> None:
        # Asked only when something must be chunked: that is when the model loads.
        room = self.embedder.max_tokens - 2  # [CLS] and [SEP]
        assert self.chunk_tokens is not None  # set in __post_init__
        if self.chunk_tokens > room:
            raise RagError(
                f"RAG_CHUNK_TOKENS={self.chunk_tokens} exceeds what {self.embedder.name} "
                f"reads ({room} tokens): set it to {room} or less."
            )

    def prepare(
        self, path: Path, stored: Document | None, sandbox: Sandbox | None = None
    ) -> Prepared:
        """The file's chunks, read in ``sandbox`` (or a sandbox of its own)."""
        private = self.is_private(stored)
        try:
            file_hash = content_hash(path, self.options(private))
            if stored and stored.version == file_hash:
                return Prepared(path, file_hash, private=private)
            loaded = self._read(path, sandbox)
        except (Unreadable, OSError) as exc:
            return Prepared(path, "", error=str(exc))
        self.check_chunk_size()
        assert self.chunk_overlap is not None and self.chunk_tokens is not None
        pieces = chunk_sections(
            loaded.sections, self.chunk_tokens, self.chunk_overlap, self.embedder.count_tokens
        )
        chunks = self._chunks(str(path), file_hash, pieces, private)
        return Prepared(
            path,
            file_hash,
            chunks,
            pages_without_text=loaded.pages_without_text,
            private=private,
            engine=loaded.engine,
            ocr_pages=loaded.ocr_pages,
            ocr_seconds=loaded.ocr_seconds,
        )

    def _read(self, path: Path, sandbox: Sandbox | None) -> Loaded:
        assert self.limits is not None  # set in __post_init__
        if sandbox is None:
            with Sandbox(self.limits) as own:
                return own.call(load, path, self.read_options)
        return sandbox.call(load, path, self.read_options)

    def _chunks(
        self, source: str, file_hash: str, pieces: list[Piece], private: bool
    ) -> list[Chunk]:
        extra = {
            **self.extra_metadata,
            "file_hash": file_hash,
            "chunk_count": len(pieces),
            **({"private": True} if private else {}),
        }
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

    def write(self, batch: list[Prepared]) -> int:
        """Embed the batch's chunks, then store each document whole under the writer lock."""
        chunks = [c for p in batch for c in p.chunks or []]
        vectors = self.embedder.embed([c.text for c in chunks]) if chunks else []
        items, at = [], 0
        for p in batch:
            n = len(p.chunks or [])
            document = Document(str(p.path), p.file_hash, n, p.private, time.time())
            items.append((document, p.chunks or [], vectors[at : at + n]))
            at += n
        self.library.store.write_many(items)
        return len(chunks)

    def run(self, target: Target, prune: bool = True, progress: bool | None = None) -> Summary:
        started = time.perf_counter()
        summary = Summary(unsupported=[str(p) for p in target.unsupported])
        stored = self.library.store.documents()
        bar = tqdm(
            total=len(target.files),
            unit="file",
            disable=not (sys.stderr.isatty() if progress is None else progress),
            file=sys.stderr,
        )
        assert self.limits is not None  # set in __post_init__
        # One reader process for the run (started by the first file that must be read),
        # replaced only after a file fails it.
        sandbox = Sandbox(self.limits)
        work = lambda path: self.prepare(path, stored.get(str(path)), sandbox)  # noqa: E731
        reads = prefetch(work, target.files)
        try:
            self._consume(reads, stored, summary, bar, started)
        finally:
            sandbox.close()  # first: a file still being read (Ctrl-C) stops at once
            reads.close()  # then the reads queued behind it, which now fail at once
        if prune:
            summary.removed = self.prune(target)
        summary.seconds = time.perf_counter() - started
        return summary

    def _consume(
        self,
        reads: Iterator[Prepared],
        stored: dict[str, Document],
        summary: Summary,
        bar: tqdm,
        started: float,
    ) -> None:
        """Records each file read, and stores the chunks in batches as they come."""
        pending: list[Prepared] = []
        waiting = 0  # chunks in pending
        with bar:
            for prepared in reads:
                self._record(prepared, stored, summary)
                if prepared.chunks is not None:
                    pending.append(prepared)
                    waiting += len(prepared.chunks)
                if waiting >= self.batch_chunks:
                    summary.chunks_written += self.write(pending)
                    pending, waiting = [], 0
                bar.update()
                rate = summary.chunks_written / max(time.perf_counter() - started, 1e-6)
                bar.set_postfix_str(
                    f"{summary.chunks_written} chunks, {rate:.0f} chunks/s" + summary.ocr_postfix(),
                    refresh=False,
                )
            summary.chunks_written += self.write(pending)

    @staticmethod
    def _record(prepared: Prepared, stored: dict[str, Document], summary: Summary) -> None:
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

    def prune(self, target: Target) -> list[str]:
        """Forget indexed files that have vanished from the folders just ingested."""
        present = {str(p) for p in target.files}
        store = self.library.store
        with store.writing():
            gone = self._vanished(present, target, store.documents())
            store.remove(gone)
        return sorted(gone)

    @staticmethod
    def _vanished(present: set[str], target: Target, stored: dict[str, Document]) -> list[str]:
        return [
            source
            for source in stored
            if source not in present
            and any(Path(source).is_relative_to(folder) for folder in target.folders)
            and not Path(source).is_file()
        ]


def forget(library: Library, paths: Iterable[Path]) -> list[str]:
    """Remove documents (or every document under a folder) from the index."""
    wanted = [p.expanduser().resolve() for p in paths]
    with library.store.writing():
        stored = library.store.documents()
        gone = sorted(
            s for s in stored if any(Path(s) == w or Path(s).is_relative_to(w) for w in wanted)
        )
        library.store.remove(gone)
    return gone


def prefetch(fn: Callable[[T], R], items: Iterable[T], ahead: int = 8) -> Generator[R, None, None]:
    """``map(fn, items)`` run one step ahead in a thread, so reading overlaps embedding.
    Left early (an error, Ctrl-C), it drops the calls not begun and returns without
    waiting for the one under way: its caller stops that one (``Sandbox.close``)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read")
    try:
        window: deque[Future[R]] = deque()
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) > ahead:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
