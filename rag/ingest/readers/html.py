"""HTML pages: the visible text, headings as the heading path, tables as Markdown tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from rag.ingest.readers.text import read_text
from rag.ingest.readers.types import Loaded, ReadOptions, SectionBuilder, Unreadable

if TYPE_CHECKING:  # BeautifulSoup loads with the first HTML file
    from bs4 import Tag

# Tables and headings are swapped for marks in the text (a private-use character
# never found in real pages), then rebuilt from the marks in reading order.
_MARK = "\ue000{}\ue000"
_MARKS = re.compile("\ue000(\\d+)\ue000")


def read(path: Path, options: ReadOptions) -> Loaded:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(read_text(path), "html.parser")
    for hidden in soup(["script", "style", "noscript", "template", "head"]):
        hidden.decompose()
    marked: list[tuple[int, str] | list[list[str]]] = []  # (level, title) or table rows
    for element in soup.find_all(["table", "h1", "h2", "h3", "h4", "h5", "h6"]):
        if element.find_parent("table") is not None:
            continue  # inside a table: read as its cell's text
        if element.name == "table":
            marked.append(_rows(element))
        else:
            title = element.get_text(" ", strip=True)
            if not title:
                continue
            marked.append((int(element.name[1]), title))
        element.replace_with(soup.new_string(f"\n\n{_MARK.format(len(marked) - 1)}\n\n"))
    text = re.sub(r"\n\s*\n+", "\n\n", soup.get_text("\n")).strip()
    build = SectionBuilder()
    for n, part in enumerate(_MARKS.split(text)):
        if n % 2:
            item = marked[int(part)]
            if isinstance(item, tuple):
                build.heading(*item)
            else:
                build.table(item)
        else:
            for paragraph in part.split("\n\n"):
                build.paragraph(paragraph)
    sections = build.done()
    if not sections:
        raise Unreadable("no visible text")
    return Loaded(sections)


def _rows(table: Tag) -> list[list[str]]:
    rows = []
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        rows.append(
            [cell.get_text(" ", strip=True) for cell in tr.find_all(["th", "td"], recursive=False)]
        )
    return rows
