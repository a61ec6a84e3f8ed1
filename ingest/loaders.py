"""Reading files into text sections, one reader per format.

A reader returns sections (a PDF page, a Markdown heading's body, a whole text
file) and raises ``Unreadable`` with a one-line reason for a file a person must
look at (encrypted, damaged, empty, binary).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class Unreadable(Exception):
    """The file is supported but cannot be read; the message is the reason."""


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None
    heading: str = ""


@dataclass(frozen=True)
class Loaded:
    sections: list[Section]
    pages_without_text: int = 0


def _pdf(path: Path) -> Loaded:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("encrypted PDF: needs a password")
        texts = [page.extract_text() or "" for page in reader.pages]
    except Unreadable:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Unreadable(f"damaged PDF: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on broken files
        if "crypt" in str(exc).lower():
            raise Unreadable(f"encrypted PDF: {exc}") from exc
        raise Unreadable(f"damaged PDF: {exc}") from exc
    sections = [Section(t, page=n) for n, t in enumerate(texts, start=1) if t.strip()]
    if not texts:
        raise Unreadable("PDF has no pages")
    if not sections:
        raise Unreadable(f"no text layer in {len(texts)} page(s): scanned? run OCR first")
    return Loaded(sections, pages_without_text=len(texts) - len(sections))


def decode(data: bytes) -> str:
    """Text in any common encoding; refuses binary data instead of guessing."""
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise Unreadable("binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise Unreadable("binary data, not text")
    # Short Western text fits several code pages equally well; Windows-1252 (a
    # superset of Latin-1) is by far the most common of them on people's disks.
    ties = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    return str(next((m for m in ties if m.encoding == "cp1252"), best))


def _read_text(path: Path) -> str:
    text = decode(path.read_bytes())
    if not text.strip():
        raise Unreadable("empty file")
    return text


def _txt(path: Path) -> Loaded:
    return Loaded([Section(_read_text(path))])


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def markdown_sections(text: str) -> list[Section]:
    """One section per heading, carrying its path of parent headings."""
    marks = list(_HEADING.finditer(text))
    sections = []
    if not marks or text[: marks[0].start()].strip():
        sections.append(Section(text[: marks[0].start()] if marks else text))
    path: list[tuple[int, str]] = []
    for i, mark in enumerate(marks):
        level = len(mark.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, mark.group(2))]
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.start() : end]
        if body.strip():
            sections.append(Section(body, heading=" > ".join(title for _, title in path)))
    return sections


def _md(path: Path) -> Loaded:
    return Loaded(markdown_sections(_read_text(path)))


def _html(path: Path) -> Loaded:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_read_text(path), "html.parser")
    for hidden in soup(["script", "style", "noscript", "template", "head"]):
        hidden.decompose()
    text = soup.get_text("\n")
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    if not text:
        raise Unreadable("no visible text")
    return Loaded([Section(text)])


def _docx(path: Path) -> Loaded:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        paragraphs = docx.Document(str(path)).paragraphs
    except (PackageNotFoundError, KeyError, ValueError) as exc:
        raise Unreadable(f"damaged DOCX: {exc}") from exc
    lines = []
    for p in paragraphs:
        level = _docx_heading_level(p.style.name if p.style is not None else "")
        lines.append(f"{'#' * level} {p.text}" if level and p.text.strip() else p.text)
    sections = markdown_sections("\n\n".join(lines))
    if not any(s.text.strip() for s in sections):
        raise Unreadable("empty document")
    return Loaded(sections)


def _docx_heading_level(style: str) -> int:
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else 0


READERS: dict[str, Callable[[Path], Loaded]] = {
    ".pdf": _pdf,
    ".md": _md,
    ".markdown": _md,
    ".txt": _txt,
    ".text": _txt,
    ".rst": _txt,
    ".html": _html,
    ".htm": _html,
    ".docx": _docx,
}


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in READERS


def load(path: Path) -> Loaded:
    try:
        if path.stat().st_size == 0:
            raise Unreadable("empty file")
        return READERS[path.suffix.lower()](path)
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from exc
