"""``ChromaStore``: the one ``LibraryStore``, over either Chroma client."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from chromadb.errors import ChromaError

from rag.errors import RagError
from rag.library.chunks import Chunk
from rag.library.documents import Document, is_abandoned
from rag.library.locking import Lock, WriterLock
from rag.library.store.catalog import _paged_metadata, _unrecorded
from rag.library.store.clients import (
    _batches,
    _chunk,
    _Client,
    _collection,
    _metadata,
    _of_source,
)
from rag.library.store.failures import _free_mb, _plainly, _reopening, plain_error
from rag.library.store.protocol import _PAGE, CheckReport, Embed, IndexDamaged
from rag.library.word_index import LexicalIndex, lexical_path


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
        lock: Lock | None = None,
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
        self._lock: Lock = lock or WriterLock(index / f"{local}.lock")
        self._seen_generation: str | None = None
        self._opened_at = self._catalog.generation()  # the documents table's, at opening
        self._found = threading.local()  # the rows of this thread's last ``nearest``
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
        with self.writing(), self._in_step():
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
        with self.writing(), self._in_step():
            self._catalog.begin(sources)
            self._catalog.forget(sources)
            for source in sources:
                self._collection.delete(where=_of_source(source))
            self._catalog.finish(sources)
            self._words.drop_documents(list(sources))

    @contextmanager
    def _in_step(self) -> Iterator[None]:
        """A write that changes the word index itself leaves it in step with the documents
        table, if it was before: the next write then need not compare every document (a
        full read of the table per write made writing slower as the library grew).
        Only where every writer takes this lock: writers on other machines that share a
        server but not a lock may change the table meanwhile, and must be looked for."""
        before = self._catalog.generation()
        yield
        every_writer_waits = self._lock.shared or not self._client.words_cached
        if every_writer_waits and before == self._seen_generation:
            self._seen_generation = self._catalog.generation()

    @_plainly
    def _sweep(self) -> None:
        """Finish what dead writers began: delete chunks of versions not recorded.
        Called with the writer lock held."""
        swept = []
        for row in self._catalog.unfinished():
            # Under a lock every writer takes, a dirty row's writer is surely gone.
            if self._lock.shared or is_abandoned(row):
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
            generation = self._catalog.generation()
            # Reopening reloads the vector index (100 ms at 100k chunks): only after a write
            # (Chroma's files also change when another process merely searches them).
            if generation != self._opened_at and self._client.changed():
                self._chroma = self._client.open()
                self._collection = _collection(self._chroma, self._name, self._model)
                self._opened_at = generation
            if self._seen_generation == generation:
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

    @_plainly
    @_reopening
    def nearest(
        self, vector: Sequence[float], k: int, sources: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        if k <= 0 or sources == []:
            return []
        where = {"source": {"$in": list(sources)}} if sources is not None else None
        # Text, metadata and vector come with the ranking, which the search fetches next
        # (and no count first: 10 ms at 100,000 chunks).
        got = self._collection.query(
            query_embeddings=[list(vector)],
            n_results=k,
            where=where,
            include=["distances", "documents", "metadatas", "embeddings"],
        )
        ids = got["ids"][0]
        rows = zip(ids, got["documents"][0], got["metadatas"][0], got["embeddings"][0])
        self._found.rows = {i: (_chunk(i, text, meta), list(v)) for i, text, meta, v in rows}
        return [(id_, 1.0 - dist) for id_, dist in zip(ids, got["distances"][0])]

    def keyword(
        self, query: str, k: int, sources: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        return self._words.search(query, k, sources)

    def keyword_scores(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        return self._words.scores(query, ids)

    @_plainly
    @_reopening
    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[Chunk, list[float]]]:
        # What this thread's last ``nearest`` read, Chroma had then; the rest is read now.
        found, self._found.rows = getattr(self._found, "rows", {}), {}
        out = {i: found[i] for i in ids if i in found}
        rest = [i for i in ids if i not in found]
        for part in _batches(len(rest)):
            got = self._collection.get(
                ids=list(rest[part]), include=["documents", "metadatas", "embeddings"]
            )
            for id_, text, meta, vector in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"]
            ):
                out[id_] = (_chunk(id_, text, meta), list(vector))
        return {i: out[i] for i in ids if i in out}  # in the order asked

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
            if self._client.words_cached:
                # A word-index cache behind other machines' writes is no fault: catch up.
                self._refuse_damaged()
                self._reconcile()
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
        self._catalog.finish([])  # a new generation: other processes reopen for the vectors
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
