"""The sentences of the retrieved passages that best answer the question.

A reader checks an answer fastest against one sentence of their own document.
Each sentence of the passages is scored by the cosine similarity of its
embedding to the question's (the library's own embedder, so no other model
loads) plus a lexical term: the share of the question's content words the
sentence contains. The similarity finds paraphrases; the word overlap rewards
the sentence that names what was asked (measured on benchmarks/qa/answers.jsonl
with ``python -m benchmarks.answers --evidence-only``; see README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.embeddings.embedder import Embedder
from rag.library.chunks import Chunk, Hit

# Weight of the word overlap next to the cosine similarity (both in 0..1).
LEXICAL_WEIGHT = 0.5
# Weight of "holds the kind of answer asked for" (a number for "how many", a name for "who").
TYPE_WEIGHT = 0.2
MIN_WORDS = 4  # shorter pieces (headings, list stubs) answer nothing

# Inside a block, a sentence ends at . ! ? followed by space and a capital, digit or
# quote; abbreviations such as "c. 1450" or "e.g. the" do not end one.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
# Blocks: a heading line, a list item, or a paragraph; a single line break inside a
# paragraph (hard-wrapped text) does not end a sentence.
_LINE = re.compile(r"^.*$", re.MULTILINE)
_STARTS_BLOCK = re.compile(r"[ \t]*(?:#|[-*+>|]\s|\d+[.)]\s)")
_ABBREVIATION = re.compile(
    r"(?:\b(?:c|ca|e\.g|i\.e|etc|vs|cf|no|st|dr|mr|mrs|ms|fig|approx)"
    r"|\b[A-Z])\.$",
    re.IGNORECASE,
)
_WORD = re.compile(r"[\w’']+")
STOPWORDS = frozenset(
    "a an the and or but of in on at to for from by with about as into over under is are "  # noqa: SIM905
    "was were be been being do does did done has have had having it its this that these "
    "those there their they them he she his her you your we our i me my what which who whom "
    "whose when where why how can could would should will shall may might must not no yes "
    "than then so such if also only very much many more most some any each all one ones "
    "get got make made tell know please say said give let s t".split()
)


@dataclass(frozen=True)
class Evidence:
    """One sentence of a passage, located in its document."""

    text: str
    source: str
    page: int | None
    heading: str
    start: int  # character offsets in the text the chunk's own span refers to
    end: int
    score: float
    chunk_id: str = ""

    def label(self) -> str:
        name = self.source.rsplit("/", 1)[-1]
        where = f"p. {self.page}" if self.page else self.heading
        return f"{name}, {where}" if where else name

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "source": self.source,
            "page": self.page,
            "heading": self.heading,
            "start": self.start,
            "end": self.end,
        }


def _blocks(text: str) -> list[tuple[int, int]]:
    blocks: list[tuple[int, int]] = []
    open_block = False
    for m in _LINE.finditer(text):
        line = m.group()
        if not line.strip():
            open_block = False
            continue
        heading = line.lstrip().startswith("#")
        if open_block and not heading and not _STARTS_BLOCK.match(line):
            blocks[-1] = (blocks[-1][0], m.end())  # a wrapped line continues its paragraph
        else:
            blocks.append((m.start(), m.end()))
        open_block = not heading
    return blocks


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, without surrounding space."""
    spans = []
    for start, end in _blocks(text):
        begin = start
        for match in _SENTENCE_END.finditer(text, start, end):
            if _ABBREVIATION.search(text[max(begin, match.start() - 8) : match.start()]):
                continue
            spans.append((begin, match.start()))
            begin = match.end()
        spans.append((begin, end))
    out = []
    for a, b in spans:
        piece = text[a:b]
        a += len(piece) - len(piece.lstrip())
        b -= len(piece) - len(piece.rstrip())
        if b > a:
            out.append((a, b))
    return out


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning, lightly stemmed (plural s)."""
    words = set()
    for w in _WORD.findall(text.lower()):
        w = w.strip("’'")
        if w in STOPWORDS or not w:
            continue
        words.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return words


def overlap(question_words: set[str], sentence: str) -> float:
    """The share of the question's content words that the sentence contains."""
    if not question_words:
        return 0.0
    return len(question_words & content_words(sentence)) / len(question_words)


@dataclass(frozen=True)
class Candidate:
    chunk: Chunk
    start: int  # offsets in chunk.text
    end: int
    before: str = ""  # the sentence before it, when this one refers back to it

    @property
    def text(self) -> str:
        return self.chunk.text[self.start : self.end]

    @property
    def scored_text(self) -> str:
        """What is compared with the question: "It was added in 1981." alone does not
        say what "it" is, so a sentence that opens with a pronoun brings the one before."""
        return f"{self.before} {self.text}" if self.before else self.text


_REFERS_BACK = re.compile(r"^(it|its|they|their|these|this|he|his|she|her|there)\b", re.IGNORECASE)
_WANTS_NUMBER = re.compile(
    r"\b(how (many|much|long|old|far|big|large|tall|deep|hot|cold|high|fast)|when|what year|"
    r"which year|what percentage|what share)\b",
    re.IGNORECASE,
)
_WANTS_NAME = re.compile(r"\b(who|whom|whose)\b", re.IGNORECASE)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"twenty|hundred|thousand|million|billion|nineteen|half|quarter)\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+")


def answer_type_bonus(question: str, sentence: str) -> float:
    """1 when the sentence holds the kind of thing asked for (a number for "how many"
    and "when", a name for "who") that the question itself does not hold."""
    if _WANTS_NUMBER.search(question):
        return float(bool(_NUMBER.search(sentence)))
    if _WANTS_NAME.search(question):
        asked = {w.lower() for w in _WORD.findall(question)}
        return float(any(m.group().lower() not in asked for m in _NAME.finditer(sentence)))
    return 0.0


def candidates(hits: Sequence[Hit]) -> list[Candidate]:
    """Every sentence of the passages once (overlapping chunks repeat sentences)."""
    seen: set[tuple[str, int, int]] = set()
    found = []
    for hit in hits:
        chunk = hit.chunk
        previous = ""
        for a, b in sentence_spans(chunk.text):
            text = chunk.text[a:b]
            key = (chunk.source, chunk.page or 0, hash(" ".join(text.split())))
            before = previous if _REFERS_BACK.search(text) else ""
            previous = text
            if len(_WORD.findall(text)) < MIN_WORDS or key in seen:
                continue
            seen.add(key)
            found.append(Candidate(chunk, a, b, before))
    return found


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b)))  # the embedder normalises its vectors


@dataclass(frozen=True)
class Scored:
    """A candidate sentence with the parts of its score."""

    candidate: Candidate
    similarity: float  # cosine similarity to the question
    overlap: float  # share of the question's content words it holds
    answer_type: float  # 1 when it holds the kind of answer asked for

    def evidence(self, lexical_weight: float, type_weight: float) -> Evidence:
        c = self.candidate
        return Evidence(
            text=c.text,
            source=c.chunk.source,
            page=c.chunk.page,
            heading=c.chunk.heading,
            start=c.chunk.start + c.start,
            end=c.chunk.start + c.end,
            score=self.similarity + lexical_weight * self.overlap + type_weight * self.answer_type,
            chunk_id=c.chunk.id,
        )


def features(question: str, hits: Sequence[Hit], embedder: Embedder) -> list[Scored]:
    """Every sentence of the passages with the parts of its score (blocking: embeds)."""
    found = candidates(hits)
    if not found:
        return []
    question_vector, *vectors = embedder.embed([question, *(c.scored_text for c in found)])
    asked = content_words(question)
    return [
        Scored(
            c,
            _cosine(question_vector, v),
            overlap(asked, c.text),
            answer_type_bonus(question, c.text),
        )
        for c, v in zip(found, vectors)
    ]


def rank(
    question: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    lexical_weight: float = LEXICAL_WEIGHT,
    type_weight: float = TYPE_WEIGHT,
) -> list[Evidence]:
    """All sentences of the passages, best evidence first (blocking: embeds)."""
    scored = [s.evidence(lexical_weight, type_weight) for s in features(question, hits, embedder)]
    return sorted(scored, key=lambda e: e.score, reverse=True)


def best(question: str, hits: Sequence[Hit], embedder: Embedder, limit: int = 2) -> list[Evidence]:
    """The ``limit`` sentences that best answer ``question`` (blocking: embeds)."""
    return rank(question, hits, embedder)[:limit] if limit > 0 else []
