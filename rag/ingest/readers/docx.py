"""Word documents: paragraphs in order, headings as the heading path, tables as Markdown."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from rag.ingest.readers.types import Loaded, ReadOptions, SectionBuilder, Unreadable


def read(path: Path, options: ReadOptions) -> Loaded:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(str(path))
        build = SectionBuilder()
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                build.table([[cell.text for cell in row.cells] for row in item.rows])
                continue
            level = _heading_level(item.style.name if item.style is not None else "")
            if level and item.text.strip():
                build.heading(level, item.text.strip())
            else:
                build.paragraph(item.text)
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile, SyntaxError) as exc:
        raise Unreadable(f"damaged DOCX: {exc}") from exc  # SyntaxError: lxml's XML errors
    sections = build.done()
    if not sections:
        raise Unreadable("empty document")
    return Loaded(sections)


def _heading_level(style: str) -> int:
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else 0
