"""PDFs: text per page with page numbers, two engines, tables, and OCR for scans.

pypdf reads first. When it cannot parse the file, PDFium (pypdfium2), which
repairs more kinds of damage, gets a try before the file is called damaged.
Pages with ruled lines are given to pdfplumber, which finds tables; those pages
keep their text with each table as a Markdown table. Pages without a text layer
are rendered by PDFium and read by OCR.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rag.ingest.readers import ocr
from rag.ingest.readers.types import Loaded, ReadOptions, Section, SectionBuilder, Unreadable

_DRAWS_LINES = re.compile(rb"(?:^|\s)(?:re|l)(?:\s|$)")  # rectangle and line-to operators
_OCR_LONG_SIDE = 2000  # pixels; RapidOCR scales larger images down to this anyway


class _Encrypted(Exception):
    pass


def read(path: Path, options: ReadOptions) -> Loaded:
    engine = "pypdf"
    try:
        texts, ruled = _pypdf_pages(path)
    except _Encrypted as exc:
        raise Unreadable(f"encrypted PDF: {exc}") from exc
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
    blank = [n for n, text in enumerate(texts, start=1) if not text.strip()]
    scanned: list[Section] = []
    seconds = 0.0
    if blank and options.ocr and ocr.available():
        scanned, seconds = _ocr_pages(path, blank)
    sections = sorted(sections + scanned, key=lambda s: s.page or 0)
    without = len(blank) - len(scanned)
    if not sections:
        raise Unreadable(_no_text(len(texts), options))
    return Loaded(
        sections, without, engine, ocr_pages=len(blank) if seconds else 0, ocr_seconds=seconds
    )


def _no_text(pages: int, options: ReadOptions) -> str:
    if options.ocr and ocr.available():
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


def _ocr_pages(path: Path, numbers: list[int]) -> tuple[list[Section], float]:
    import pypdfium2 as pdfium

    sections, seconds = [], 0.0
    try:
        document = pdfium.PdfDocument(path)
    except Exception:
        return [], 0.0
    try:
        for n in numbers:
            page = document[n - 1]
            width, height = page.get_size()
            scale = min(3.0, _OCR_LONG_SIDE / max(width, height, 1))
            found = ocr.read(page.render(scale=scale).to_pil())
            seconds += found.seconds
            if found.text.strip():
                sections.append(Section(found.text, page=n, ocr=True))
    finally:
        document.close()
    return sections, seconds
