"""HTML pages: the visible text, with tables as Markdown tables."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.readers.text import read_text
from ingest.readers.types import Loaded, ReadOptions, SectionBuilder, Unreadable

_MARK = "\ue000table{}\ue000"  # a private-use character never found in real pages
_MARKS = re.compile("\ue000table(\\d+)\ue000")


def read(path: Path, options: ReadOptions) -> Loaded:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(read_text(path), "html.parser")
    for hidden in soup(["script", "style", "noscript", "template", "head"]):
        hidden.decompose()
    tables = []
    for table in soup.find_all("table"):
        if table.find_parent("table") is not None:
            continue  # a nested table is read as its cell's text
        tables.append(_rows(table))
        table.replace_with(soup.new_string(f"\n\n{_MARK.format(len(tables) - 1)}\n\n"))
    text = re.sub(r"\n\s*\n+", "\n\n", soup.get_text("\n")).strip()
    build = SectionBuilder()
    for n, part in enumerate(_MARKS.split(text)):
        if n % 2:
            build.table(tables[int(part)])
        else:
            for paragraph in part.split("\n\n"):
                build.paragraph(paragraph)
    sections = build.done()
    if not sections:
        raise Unreadable("no visible text")
    return Loaded(sections)


def _rows(table) -> list[list[str]]:
    rows = []
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        rows.append([cell.get_text(" ", strip=True) for cell in tr.find_all(["th", "td"],
                                                                           recursive=False)])
    return rows
