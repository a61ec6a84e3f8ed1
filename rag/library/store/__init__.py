"""The library store: chunks with their vectors, the documents table, the word index.

``LibraryStore`` is the seam every other module uses; nothing outside this package
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

from rag.library.documents import Document
from rag.library.store.backends import (
    BACKENDS,
    backend_of,
    drop_library,
    library_exists,
    open_store,
    source_counts,
)
from rag.library.store.protocol import CheckReport, IndexDamaged, LibraryStore

__all__ = [
    "BACKENDS",
    "CheckReport",
    "Document",
    "IndexDamaged",
    "LibraryStore",
    "backend_of",
    "drop_library",
    "library_exists",
    "open_store",
    "source_counts",
]
