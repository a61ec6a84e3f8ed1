"""Splitting sections into overlapping chunks that fit the embedding model.

Structure first: paragraphs, then sentences, then words, so a chunk ends at the
largest boundary that keeps it under ``max_tokens``. Sizes are counted in the
embedding model's own tokens, because a chunk longer than the model's window
would be silently truncated when embedded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingest.loaders import Section

CountTokens = Callable[[Sequence[str]], list[int]]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_WORD_GAP = re.compile(r"\s+")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class Piece:
    """A chunk before it gets an id: its text and where it came from."""

    text: str
    page: int | None
    heading: str
    start: int
    end: int


def _spans_between(text: str, gap: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    spans, cursor = [], start
    for match in gap.finditer(text, start, end):
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    return [(a, b) for a, b in (_strip(text, a, b) for a, b in spans) if b > a]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def units(text: str, max_tokens: int, count: CountTokens) -> list[Span]:
    """The largest structural pieces of ``text`` that each fit in ``max_tokens``."""
    pending = _spans_between(text, _PARAGRAPH_BREAK, 0, len(text))
    finer = (_SENTENCE_END, _WORD_GAP)
    out: list[Span] = []
    for level in range(len(finer) + 1):
        sizes = count([text[a:b] for a, b in pending])
        too_big = []
        for (a, b), n in zip(pending, sizes):
            if n <= max_tokens or level == len(finer):
                out.append(Span(a, b, n))  # a single word over the limit stays whole
            else:
                too_big.append((a, b))
        if not too_big:
            break
        pending = [s for a, b in too_big for s in _spans_between(text, finer[level], a, b)]
    return sorted(out, key=lambda s: s.start)


def pack(spans: list[Span], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of consecutive spans; each chunk repeats the tail of the last."""
    chunks: list[tuple[int, int]] = []
    current: list[Span] = []
    for span in spans:
        if current and sum(s.tokens for s in current) + span.tokens > max_tokens:
            chunks.append((current[0].start, current[-1].end))
            current = _tail(current, overlap, max_tokens - span.tokens)
        current.append(span)
    if current:
        chunks.append((current[0].start, current[-1].end))
    return chunks


def _tail(spans: list[Span], overlap: int, room: int) -> list[Span]:
    kept: list[Span] = []
    budget = min(overlap, room)
    for span in reversed(spans[1:]):  # never the whole chunk again, or we'd not progress
        if span.tokens > budget:
            break
        kept.insert(0, span)
        budget -= span.tokens
    return kept


def chunk_sections(
    sections: Sequence[Section], max_tokens: int, overlap: int, count: CountTokens
) -> list[Piece]:
    pieces = []
    for section in sections:
        for start, end in pack(units(section.text, max_tokens, count), max_tokens, overlap):
            pieces.append(
                Piece(section.text[start:end], section.page, section.heading, start, end)
            )
    return pieces
