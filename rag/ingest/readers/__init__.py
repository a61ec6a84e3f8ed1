"""One reader per format, chosen by what a file holds (see ``detect``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.ingest.readers import docx, html, image, markdown, pdf, text
from rag.ingest.readers.detect import BY_SUFFIX, reader_kind
from rag.ingest.readers.types import Loaded, ReadOptions, Unreadable

Reader = Callable[[Path, ReadOptions], Loaded]

READERS: dict[str, Reader] = {
    "pdf": pdf.read,
    "docx": docx.read,
    "image": image.read,
    "markdown": markdown.read,
    "html": html.read,
    "text": text.read,
}

# For people: the formats read, in the order a person looks for them.
FORMATS = "PDF, Word (.docx), Markdown, HTML, text, PNG or JPEG images of text"


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in BY_SUFFIX


def check(path: Path, max_bytes: int, name: str | None = None) -> str:
    """The reader ``path`` gets, after the checks every file passes (size, content
    matching the name); raises ``Unreadable`` with the reason otherwise."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise Unreadable("empty file")
        if size > max_bytes:
            raise Unreadable(
                f"too large: {size / 2**20:.0f} MB, the limit is "
                f"{max_bytes / 2**20:.0f} MB (RAG_MAX_FILE_MB)"
            )
        return reader_kind(path, name)
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from exc


def load(path: Path, options: ReadOptions | None = None) -> Loaded:
    options = options or ReadOptions()
    kind = check(path, options.max_bytes)
    try:
        return READERS[kind](path, options)
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from exc
