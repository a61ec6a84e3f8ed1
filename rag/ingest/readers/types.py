"""What every reader returns: sections of text, with the tables and code blocks in them marked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


class Unreadable(Exception):
    """The file is supported but cannot be read; the message is the reason."""


@dataclass(frozen=True)
class Block:
    """A part of a section's text the chunker must not cut like prose.

    A table is split only between rows, with its header (``start`` to
    ``header_end``) repeated; a code block only between lines.
    """

    start: int
    end: int
    kind: Literal["table", "code"]
    header_end: int = 0


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None
    heading: str = ""
    ocr: bool = False  # the text was read from pixels, so it may hold misread words
    blocks: tuple[Block, ...] = ()


@dataclass(frozen=True)
class Loaded:
    sections: list[Section]
    pages_without_text: int = 0
    engine: str = ""  # for PDFs: the engine that parsed the file
    ocr_pages: int = 0  # pages or images read by OCR
    ocr_seconds: float = 0.0


@dataclass(frozen=True)
class ReadOptions:
    ocr: bool = True  # read scanned pages and images where an OCR engine is installed
    max_bytes: int = 100 * 1024 * 1024
    ocr_max_pages: int = 100  # scanned pages OCR reads in one file, blank ones not counted


@dataclass
class SectionBuilder:
    """Builds sections from paragraphs, headings and tables, marking the tables."""

    page: int | None = None
    ocr: bool = False
    sections: list[Section] = field(default_factory=list)
    _path: list[tuple[int, str]] = field(default_factory=list)
    _parts: list[str] = field(default_factory=list)
    _blocks: list[Block] = field(default_factory=list)
    _size: int = 0

    def heading(self, level: int, title: str) -> None:
        self._flush()
        self._path = [(lvl, t) for lvl, t in self._path if lvl < level] + [(level, title)]
        self.paragraph(f"{'#' * level} {title}")

    def paragraph(self, text: str) -> None:
        if text.strip():
            self._add(text.strip())

    def table(self, rows: list[list[str]]) -> None:
        rows = [r for r in rows if any(c.strip() for c in r)]
        if not rows:
            return
        text, header_len = markdown_table(rows)
        start = self._add(text)
        self._blocks.append(Block(start, start + len(text), "table", start + header_len))

    def _add(self, text: str) -> int:
        if self._parts:
            self._parts.append("\n\n")
            self._size += 2
        start = self._size
        self._parts.append(text)
        self._size += len(text)
        return start

    def _flush(self) -> None:
        text = "".join(self._parts)
        if text.strip():
            heading = " > ".join(t for _, t in self._path)
            self.sections.append(Section(text, self.page, heading, self.ocr, tuple(self._blocks)))
        self._parts, self._blocks, self._size = [], [], 0

    def done(self) -> list[Section]:
        self._flush()
        return self.sections


def _cell(value: object) -> str:
    text = " ".join(str(value if value is not None else "").split())
    return text.replace("|", "\\|")


def markdown_table(rows: list[list[str]]) -> tuple[str, int]:
    """A Markdown table (first row as header) and the length of its header lines."""
    width = max(len(r) for r in rows)
    cells = [[_cell(c) for c in r] + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    header = lines[0] + "\n" + "| " + " | ".join(["---"] * width) + " |"
    body = "\n".join(lines[1:])
    return (header + "\n" + body if body else header), len(header)
