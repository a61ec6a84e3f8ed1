"""Splitting sections into overlapping chunks that fit the embedding model.

Structure first: paragraphs, then sentences, then words, so a chunk ends at the
largest boundary that keeps it under ``max_tokens``. Sizes are counted in the
embedding model's own tokens, because a chunk longer than the model's window
would be silently truncated when embedded.

Tables and code blocks the readers marked are kept whole where they fit. A
table too big for one chunk is split between rows, each part starting with the
table's header again, so every chunk of it says what its columns are; a code
block is split between lines, never inside one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.ingest.readers.types import Block, Section

CountTokens = Callable[[Sequence[str]], list[int]]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_WORD_GAP = re.compile(r"\s+")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    tokens: int  # including the header's, if any
    header: str = ""  # a table's header rows, repeated when a chunk starts with this span


@dataclass(frozen=True)
class Piece:
    """A chunk before it gets an id: its text and where it came from."""

    text: str
    page: int | None
    heading: str
    start: int
    end: int
    ocr: bool = False


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


def units(
    text: str, max_tokens: int, count: CountTokens, blocks: Sequence[Block] = ()
) -> list[Span]:
    """The largest structural pieces of ``text`` that each fit in ``max_tokens``."""
    prose: list[tuple[int, int]] = []
    out: list[Span] = []
    cursor = 0
    for block in sorted(blocks, key=lambda b: b.start):
        prose += _spans_between(text, _PARAGRAPH_BREAK, cursor, block.start)
        out += _block_units(text, block, max_tokens, count)
        cursor = max(cursor, block.end)
    prose += _spans_between(text, _PARAGRAPH_BREAK, cursor, len(text))
    out += _prose_units(text, prose, max_tokens, count)
    return sorted(out, key=lambda s: s.start)


def _prose_units(
    text: str, pending: list[tuple[int, int]], max_tokens: int, count: CountTokens
) -> list[Span]:
    finer = (_SENTENCE_END, _WORD_GAP)
    out: list[Span] = []
    for level in range(len(finer) + 1):
        if not pending:
            break
        sizes = count([text[a:b] for a, b in pending])
        too_big = []
        for (a, b), n in zip(pending, sizes):
            if n <= max_tokens or level == len(finer):
                out.append(Span(a, b, n))  # a single word over the limit stays whole
            else:
                too_big.append((a, b))
        pending = [s for a, b in too_big for s in _spans_between(text, finer[level], a, b)]
    return out


def _block_units(text: str, block: Block, max_tokens: int, count: CountTokens) -> list[Span]:
    """A block whole if it fits; else code by lines, a table by rows under its header."""
    start, end = _strip(text, block.start, block.end)
    if end <= start:
        return []
    [whole] = count([text[start:end]])
    if whole <= max_tokens:
        return [Span(start, end, whole)]
    if block.kind == "code":
        lines = _lines(text, start, end)
        return [Span(a, b, n) for (a, b), n in zip(lines, count([text[a:b] for a, b in lines]))]
    header = text[block.start : block.header_end]
    [header_tokens] = count([header])
    rows = _lines(text, block.header_end, end)
    budget = max(max_tokens - header_tokens, 1)
    groups: list[Span] = []
    group: list[tuple[int, int]] = []
    used = 0
    for (a, b), n in zip(rows, count([text[a:b] for a, b in rows])):
        if group and used + n > budget:
            groups.append(
                _row_group(group, used, header, header_tokens, first=not groups, table_start=start)
            )
            group, used = [], 0
        group.append((a, b))
        used += n
    if group:
        groups.append(
            _row_group(group, used, header, header_tokens, first=not groups, table_start=start)
        )
    return groups


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Non-blank lines, with their indentation (code needs it), without line breaks."""
    spans, cursor = [], start
    while cursor < end:
        stop = text.find("\n", cursor, end)
        stop = end if stop < 0 else stop
        if text[cursor:stop].strip():
            spans.append((cursor, len(text[cursor:stop].rstrip()) + cursor))
        cursor = stop + 1
    return spans


def _row_group(
    rows: list[tuple[int, int]],
    tokens: int,
    header: str,
    header_tokens: int,
    *,
    first: bool,
    table_start: int,
) -> Span:
    # The first group starts at the table itself, so it holds the header already.
    if first:
        return Span(table_start, rows[-1][1], tokens + header_tokens)
    return Span(rows[0][0], rows[-1][1], tokens + header_tokens, header=header)


def pack(spans: list[Span], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of consecutive spans; each chunk repeats the tail of the last."""
    return [(group[0].start, group[-1].end) for group in _pack(spans, max_tokens, overlap)]


def _pack(spans: list[Span], max_tokens: int, overlap: int) -> list[list[Span]]:
    chunks: list[list[Span]] = []
    current: list[Span] = []
    for span in spans:
        if current and sum(s.tokens for s in current) + span.tokens > max_tokens:
            chunks.append(current)
            current = _tail(current, overlap, max_tokens - span.tokens)
        current.append(span)
    if current:
        chunks.append(current)
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
        spans = units(section.text, max_tokens, count, section.blocks)
        for group in _pack(spans, max_tokens, overlap):
            start, end = group[0].start, group[-1].end
            body = section.text[start:end]
            text = f"{group[0].header}\n{body}" if group[0].header else body
            pieces.append(Piece(text, section.page, section.heading, start, end, section.ocr))
    return pieces
