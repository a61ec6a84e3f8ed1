"""The lexical (BM25) index beside Chroma: SQLite FTS5, built into Python.

It holds each chunk's id, source, a title (file name and heading path) and its
text. It is derived: Chroma and the documents table (rag/library/documents.py) are the
record of what exists, and this index is brought in step with them one document
version at a time (``replace_document``, ``drop_documents``; its ``docs`` table
says which version of each document it holds). Never by counts: equal counts can
hide a gap, and deleting "extra" rows races a writer that is adding them.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from rag.library.chunks import Chunk
from rag.library.sqlite_writes import write_transaction

# Bumped when the schema, tokenizer or indexed text changes: the index is then rebuilt.
SCHEMA = "2"
# Porter stemming lets "planted" match "planting"; unicode61 folds case and accents.
_TOKENIZER = "porter unicode61 remove_diacritics 2"
# File name and heading path count as much as body words (measured: 0, 1, 2 and 4).
TITLE_WEIGHT = 1.0
MAX_QUERY_TERMS = 32
# BM25 scores every row that holds any word of the question, so its time grew with the
# library: at 100,000 chunks one question held "given" (in 84,000 rows) and took 390 ms.
# A question's words are matched rarest first while the rows holding them stay within
# this budget; a word beyond it is in so many rows that its weight (BM25's idf) is low.
# The rarest word is always kept. Below ~5,000 chunks nothing is ever left out.
MATCH_BUDGET = 5000
_SQL_BATCH = 500  # well under SQLite's limit on bound variables

# Scripts written without spaces: each character becomes a token (queries use bigrams).
_UNSPACED = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")
_WORD = re.compile(r"\w+")

STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)


def _spaced(text: str) -> str:
    return _UNSPACED.sub(r" \1 ", text)


def title_of(chunk: Chunk) -> str:
    """What the chunk is about beyond its own words: file name and heading path."""
    name = re.sub(r"[-_.]+", " ", Path(chunk.source).stem)
    return f"{name} {chunk.heading}".strip()


def match_expression(query: str) -> str:
    """An FTS5 query from free text: any of its words, each quoted, so nothing is syntax.

    Quotes, operators (AND, NEAR, ``*``, ``:``) and brackets in the question become
    plain words or vanish; runs of unspaced scripts become overlapping bigram phrases.
    """
    return _any_of(query_terms(query))


def _any_of(terms: Sequence[str]) -> str:
    return " OR ".join(f'"{t}"' for t in terms)


def query_terms(query: str) -> list[str]:
    """The words (and bigram phrases) of a question that ``match_expression`` joins."""
    words = [w.lower() for w in _WORD.findall(_spaced(query))]
    kept = [w for w in words if w not in STOPWORDS] or words
    terms: list[str] = []
    run: list[str] = []
    for word in [*kept, ""]:
        if word and _UNSPACED.fullmatch(word):
            run.append(word)
            continue
        terms += [" ".join(run[i : i + 2]) for i in range(max(len(run) - 1, 1))] if run else []
        run = []
        if word:
            terms.append(word)
    return list(dict.fromkeys(terms))[:MAX_QUERY_TERMS]


def _batches(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _SQL_BATCH):
        yield items[start : start + _SQL_BATCH]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class LexicalIndex:
    """Chunk text under BM25, in a file (or in memory when ``path`` is None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError:
            # A damaged file holds nothing Chroma doesn't: start afresh and let sync refill it.
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._db = self._connect()
        if self._schema() != SCHEMA:
            self._create()

    def _connect(self) -> sqlite3.Connection:
        # One connection shared by the app's worker threads; the lock serialises them.
        db = sqlite3.connect(
            str(self.path) if self.path else ":memory:",
            check_same_thread=False,
            timeout=30,
            isolation_level=None,  # transactions are explicit: see _write
        )
        db.execute("PRAGMA journal_mode=WAL")  # readers in other processes never wait
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _schema(self) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError:
            return None
        return row[0] if row else None

    def _create(self) -> None:
        with self._lock:
            self._db.executescript(
                f"""
                BEGIN IMMEDIATE;
                DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS chunk; DROP TABLE IF EXISTS body;
                DROP TABLE IF EXISTS docs;
                CREATE TABLE docs(source TEXT PRIMARY KEY, version TEXT NOT NULL);
                CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE chunk(rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL,
                                   source TEXT NOT NULL);
                CREATE INDEX chunk_source ON chunk(source);
                CREATE VIRTUAL TABLE body USING fts5(title, text, tokenize='{_TOKENIZER}');
                INSERT INTO body(body, rank) VALUES ('rank', 'bm25({TITLE_WEIGHT}, 1.0)');
                INSERT INTO meta VALUES ('schema', '{SCHEMA}');
                COMMIT;
                """
            )

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _remove(self, db: sqlite3.Connection, values: Sequence[str], column: str = "id") -> None:
        """Delete the chunks, and their words, whose ``column`` (id or source) is listed."""
        for part in _batches(list(values)):
            marks = _marks(len(part))
            db.execute(
                "DELETE FROM body WHERE rowid IN "
                f"(SELECT rowid FROM chunk WHERE {column} IN ({marks}))",
                part,
            )
            db.execute(f"DELETE FROM chunk WHERE {column} IN ({marks})", part)

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Insert or replace chunks, all or none."""
        with self._write() as db:
            self._remove(db, [c.id for c in chunks])
            self._insert(db, chunks)

    def _insert(self, db: sqlite3.Connection, chunks: Sequence[Chunk]) -> None:
        for c in chunks:
            rowid = db.execute(
                "INSERT INTO chunk(id, source) VALUES (?, ?)", (c.id, c.source)
            ).lastrowid
            db.execute(
                "INSERT INTO body(rowid, title, text) VALUES (?, ?, ?)",
                (rowid, _spaced(title_of(c)), _spaced(c.text)),
            )

    def delete(self, ids: Sequence[str]) -> None:
        with self._write() as db:
            self._remove(db, list(ids))

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM chunk").fetchone()[0]

    def ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM chunk")}

    def sources(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT DISTINCT source FROM chunk")]

    def search(
        self, query: str, k: int, sources: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best (id, BM25 score) pairs, higher is better; ``sources`` restricts."""
        return self._match(query, k, sources)

    def scores(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        """BM25 scores of the given chunks (those that match no query word are left out)."""
        out: dict[str, float] = {}
        for part in _batches(list(ids)):
            out.update(self._match(query, None, None, within=part))
        return out

    def _expression(self, query: str) -> tuple[str, bool]:
        """``match_expression`` within ``MATCH_BUDGET`` (rarest words first), and whether
        the rows matched may still exceed it (when the rarest word alone does)."""
        terms = query_terms(query)
        rows = {t: self._rows_holding(t) for t in terms}
        kept: set[str] = set()
        total = 0
        for term in sorted(terms, key=lambda t: rows[t]):
            if kept and total + rows[term] > MATCH_BUDGET:
                break
            kept.add(term)
            total += rows[term]
        return _any_of([t for t in terms if t in kept]), total > MATCH_BUDGET

    def _rows_holding(self, term: str) -> int:
        """Rows holding a word or phrase (FTS5 stems it), counted up to the budget + 1:
        a word in more rows costs no more to count."""
        sql = "SELECT count(*) FROM (SELECT 1 FROM body WHERE body MATCH ? LIMIT ?)"
        return self._db.execute(sql, (f'"{term}"', MATCH_BUDGET + 1)).fetchone()[0]

    def _match(
        self,
        query: str,
        k: int | None,
        sources: Sequence[str] | None,
        within: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        if sources == []:
            return []
        with self._lock:
            expression, over_budget = self._expression(query)
        if not expression:
            return []
        where, args = "", list[object]([expression])
        if sources is not None:
            where += f" AND chunk.source IN ({_marks(len(sources))})"
            args += list(sources)
        if within is not None:
            where += f" AND chunk.id IN ({_marks(len(within))})"
            args += list(within)
        # FTS5's bm25 is lower-is-better; negated so every score in the app reads the same way.
        sql = (
            "SELECT chunk.id, -body.rank AS score FROM body JOIN chunk "
            f"ON chunk.rowid = body.rowid WHERE body MATCH ?{where}"
        )
        if k is not None:
            # A word in more rows than the budget: only the budget's first rows are
            # scored, so no question costs more than MATCH_BUDGET rows (the vector
            # search still looks at every chunk).
            if over_budget:
                sql = f"SELECT * FROM ({sql} LIMIT {MATCH_BUDGET}) ORDER BY score DESC LIMIT ?"
            else:
                sql += " ORDER BY body.rank LIMIT ?"
            args.append(k)
        with self._lock:
            return [(id_, float(s)) for id_, s in self._db.execute(sql, args)]

    def versions(self) -> dict[str, str]:
        """The version of each document whose chunks this index holds."""
        with self._lock:
            return dict(self._db.execute("SELECT source, version FROM docs"))

    def _drop(self, db: sqlite3.Connection, sources: Sequence[str]) -> None:
        self._remove(db, sources, column="source")
        for part in _batches(list(sources)):
            db.execute(f"DELETE FROM docs WHERE source IN ({_marks(len(part))})", part)

    def replace_document(self, source: str, version: str, chunks: Sequence[Chunk]) -> None:
        """Hold exactly these chunks for ``source``, as its ``version``: all or nothing."""
        self.replace_documents([(source, version, chunks)])

    def replace_documents(self, items: Sequence[tuple[str, str, Sequence[Chunk]]]) -> None:
        """``replace_document`` for several documents in one transaction."""
        with self._write() as db:
            for source, version, chunks in items:
                self._drop(db, [source])  # every chunk of it: the new ones have its name
                self._insert(db, chunks)
                db.execute("INSERT INTO docs VALUES (?, ?)", (source, version))

    def drop_documents(self, sources: Sequence[str]) -> None:
        with self._write() as db:
            self._drop(db, sources)


def lexical_path(index: Path, collection: str) -> Path:
    return index / f"{collection}.fts.sqlite3"
