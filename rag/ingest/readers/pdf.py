"""PDFs: text per page with page numbers, two engines, tables, and OCR for scans.

pypdf reads first. When it cannot parse the file, PDFium (pypdfium2), which
repairs more kinds of damage, gets a try before the file is called damaged; but
not when pypdf stopped at one of its limits against decompression bombs: PDFium
has none, and would inflate the bomb. Pages with ruled lines are given to
pdfplumber, which finds tables; those pages keep their text with each table as
a Markdown table. Pages without a text layer are rendered by PDFium and read by
OCR, blank ones skipped, at most ``ocr_max_pages`` of them per file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.ingest.readers import ocr
from rag.ingest.readers.types import Loaded, ReadOptions, Section, SectionBuilder, Unreadable

if TYPE_CHECKING:
    from PIL.Image import Image

_DRAWS_LINES = re.compile(rb"(?:^|\s)(?:re|l)(?:\s|$)")  # rectangle and line-to operators


class _Encrypted(Exception):
    pass


def read(path: Path, options: ReadOptions) -> Loaded:
    from pypdf.errors import LimitReachedError

    engine = "pypdf"
    try:
        texts, ruled = _pypdf_pages(path)
    except _Encrypted as exc:
        raise Unreadable(f"encrypted PDF: {exc}") from exc
    except LimitReachedError as exc:
        raise Unreadable(
            f"too large to read safely: a stream inflates past the limit ({exc})"
        ) from exc
    except Exception as first:
        try:
            texts, ruled, engine = _pdfium_pages(path), [], "pdfium"
        except Exception as exc:
            if "password" in str(exc).lower():
                raise Unreadable(f"encrypted PDF: {exc}") from exc
            raise Unreadable(f"damaged PDF: {first}") from first
    if not texts:
        raise Unreadable("PDF has no pages")

    drawn = [
        n for n, (text, lines) in enumerate(zip(texts, ruled), start=1) if text.strip() and lines
    ]
    tabled = _tables(path, drawn) if drawn else {}
    sections: list[Section] = []
    for n, text in enumerate(texts, start=1):
        if text.strip():
            sections.extend(tabled.get(n) or [Section(text, page=n)])
    untexted = [n for n, text in enumerate(texts, start=1) if not text.strip()]
    scans = _Scans()
    if untexted and options.ocr and ocr.available():
        scans = _ocr_pages(path, untexted, options.ocr_max_pages)
    sections = sorted(sections + scans.sections, key=lambda s: s.page or 0)
    without = len(untexted) - len(scans.sections)
    if not sections:
        raise Unreadable(_no_text(len(texts), options, scans.blank))
    return Loaded(sections, without, engine, ocr_pages=scans.read, ocr_seconds=scans.seconds)


def _no_text(pages: int, options: ReadOptions, blank: int = 0) -> str:
    if options.ocr and ocr.available():
        if blank == pages:
            return f"no text layer in {pages} page(s), and all of them blank"
        return f"no text layer in {pages} page(s) and OCR found no text either"
    if options.ocr:
        return f"no text layer in {pages} page(s): scanned? install rapidocr to read it"
    return f"no text layer in {pages} page(s): scanned? ingest without --no-ocr to read it"


def _pypdf_pages(path: Path) -> tuple[list[str], list[bool]]:
    from pypdf import PdfReader

    reader = PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):
        raise _Encrypted("needs a password")
    texts, ruled = [], []
    for page in reader.pages:
        texts.append(page.extract_text() or "")
        try:
            contents = page.get_contents()
            ruled.append(contents is not None and bool(_DRAWS_LINES.search(contents.get_data())))
        except Exception:
            ruled.append(False)
    return texts, ruled


def _pdfium_pages(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)
    try:
        texts = []
        for page in document:
            text = page.get_textpage().get_text_bounded()
            texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
        return texts
    finally:
        document.close()


def _tables(path: Path, numbers: list[int]) -> dict[int, list[Section]]:
    """Pages (of ``numbers``) that hold tables: their text with the tables as Markdown."""
    import pdfplumber

    found: dict[int, list[Section]] = {}
    try:
        with pdfplumber.open(path) as pdf:
            for number in numbers:
                try:
                    sections = _page_with_tables(pdf.pages[number - 1], number)
                except Exception:
                    continue
                if sections:
                    found[number] = sections
    except Exception:
        pass
    return found


def _page_with_tables(page: Any, number: int) -> list[Section]:
    tables = sorted(page.find_tables(), key=lambda t: t.bbox[1])
    if not tables:
        return []
    build = SectionBuilder(page=number)
    x0, top, x1, bottom = page.bbox
    for table in tables:
        _text_between(build, page, (x0, top, x1, bottom), top, table.bbox[1])
        build.table([[c or "" for c in row] for row in table.extract()])
        top = max(top, table.bbox[3])
    _text_between(build, page, (x0, top, x1, bottom), top, bottom)
    return build.done()


def _text_between(build: SectionBuilder, page: Any, box: tuple, top: float, bottom: float) -> None:
    if bottom - top < 1:
        return
    region = page.crop((box[0], top, box[2], bottom))
    for paragraph in re.split(r"\n\s*\n", region.extract_text() or ""):
        build.paragraph(paragraph)


@dataclass
class _Scans:
    sections: list[Section] = field(default_factory=list)
    read: int = 0  # pages OCR read
    blank: int = 0  # pages skipped as blank
    seconds: float = 0.0


def _ocr_pages(path: Path, numbers: list[int], budget: int) -> _Scans:
    """OCR of the pages ``numbers``, blank ones skipped; refused whole, before any
    OCR, when more than ``budget`` pages are left to read."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(path)
    except Exception:
        return _Scans()
    try:
        # A small grey rendering tells a blank page in milliseconds; OCR takes seconds.
        wanted = [n for n in numbers if not ocr.blank(_render(document[n - 1], 800, grey=True))]
        if len(wanted) > budget:
            raise Unreadable(
                f"too large to read safely: {len(wanted)} scanned pages to read by OCR, "
                f"more than the {budget} allowed in one file (RAG_OCR_MAX_PAGES)"
            )
        scans = _Scans(read=len(wanted), blank=len(numbers) - len(wanted))
        for n in wanted:
            found = ocr.read(_render(document[n - 1], ocr.LONG_SIDE))
            scans.seconds += found.seconds
            if found.text.strip():
                scans.sections.append(Section(found.text, page=n, ocr=True))
    finally:
        document.close()
    return scans


def _render(page: Any, long_side: int, grey: bool = False) -> Image:
    width, height = page.get_size()
    scale = min(3.0, long_side / max(width, height, 1))
    return page.render(scale=scale, grayscale=grey).to_pil()
