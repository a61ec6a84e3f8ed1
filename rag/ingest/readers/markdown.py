"""Markdown through a CommonMark parser (markdown-it-py).

The parser finds headings (ATX ``#`` and setext ``===``), fenced and indented
code, tables and YAML front matter, so a ``# comment`` inside a code block is
code, not a heading. Each heading starts a section that carries the path of its
parent headings; code blocks and tables are marked for the chunker.
"""

from __future__ import annotations

from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any

from rag.ingest.readers.text import read_text
from rag.ingest.readers.types import Block, Loaded, ReadOptions, Section


@cache
def _parser() -> Any:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.front_matter import front_matter_plugin

    return MarkdownIt("commonmark").enable("table").use(front_matter_plugin)


def markdown_sections(text: str) -> list[Section]:
    """One section per heading, carrying its path of parent headings."""
    # Line numbers as the parser counts them: only "\n" (and "\r\n") end a line.
    lines = text.split("\n")
    offset = [0, *accumulate(len(line) + 1 for line in lines)]  # line number -> character

    def at(line: int) -> int:
        return min(offset[min(line, len(lines))], len(text))

    tokens = _parser().parse(text)
    begin = 0
    cuts: list[tuple[int, int, str]] = []  # (position, level, title)
    blocks: list[Block] = []
    for i, tok in enumerate(tokens):
        if tok.map is None:
            continue
        first, last = tok.map
        if tok.type == "front_matter":
            begin = at(last)  # metadata for tools, not prose
        elif tok.type == "heading_open" and tok.level == 0:
            cuts.append((at(first), int(tok.tag[1]), tokens[i + 1].content.strip()))
        elif tok.type in ("fence", "code_block"):
            blocks.append(Block(at(first), _trim(text, at(first), at(last)), "code"))
        elif tok.type == "table_open":
            blocks.append(
                Block(
                    at(first),
                    _trim(text, at(first), at(last)),
                    "table",
                    _trim(text, at(first), at(first + 2)),
                )
            )

    sections = []
    path: list[tuple[int, str]] = []
    bounds = [(begin, 0, ""), *cuts]
    for n, (start, level, title) in enumerate(bounds):
        if n:
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        end = bounds[n + 1][0] if n + 1 < len(bounds) else len(text)
        body = text[start:end]
        if body.strip():
            inner = tuple(
                Block(
                    b.start - start,
                    b.end - start,
                    b.kind,
                    b.header_end - start if b.header_end else 0,
                )
                for b in blocks
                if start <= b.start and b.end <= end
            )
            sections.append(Section(body, heading=" > ".join(t for _, t in path), blocks=inner))
    return sections


def _trim(text: str, start: int, end: int) -> int:
    """``end`` moved back over trailing newlines, so a block ends with its last line."""
    while end > start and text[end - 1] in "\r\n":
        end -= 1
    return end


def read(path: Path, options: ReadOptions) -> Loaded:
    return Loaded(markdown_sections(read_text(path)))
