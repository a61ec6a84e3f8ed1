"""Which reader a file gets: decided by its content, checked against its name.

The name only says which formats are acceptable (a ``.pdf`` must hold a PDF);
the bytes say what the file is. A file whose content is not what its name
claims is refused, both ways: ``report.pdf`` holding a saved HTML page (often a
failed download) is not parsed as a PDF, and ``notes.txt`` holding a PDF is
not read either, because a renamed file is more often a mistake than a wish.
Among text formats the name chooses the flavour (Markdown, HTML, plain): the
same bytes are safe under any of those readers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from rag.ingest.readers.types import Unreadable

# Name -> the kind of content that name promises.
BY_SUFFIX = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
}
TEXT_KINDS = {"markdown", "text", "html"}
_HEAD = 2048

# What a person calls each content kind, for messages.
DESCRIBED = {
    "pdf": "a PDF",
    "docx": "a Word document",
    "image": "an image",
    "zip": "a ZIP archive",
    "binary": "binary data",
    "text": "text",
}


def sniff(path: Path) -> str:
    """The content kind from the file's bytes: pdf, docx, image, zip, binary or text."""
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if b"%PDF-" in head[:1024]:  # the spec lets junk precede the header
        return "pdf"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return "image"
    if head.startswith(b"PK\x03\x04"):
        return "docx" if _is_docx(path) else "zip"
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "binary"  # UTF-16 text has zero bytes too, behind its byte-order mark
    return "text"


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return "word/document.xml" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return True  # a broken DOCX: let the DOCX reader say it is damaged


def reader_kind(path: Path, name: str | None = None) -> str:
    """The reader for ``path`` (called ``name``, if given, as an upload is);
    raises ``Unreadable`` when content and name disagree."""
    suffix = Path(name or path.name).suffix
    promised = BY_SUFFIX.get(suffix.lower())
    if promised is None:
        raise Unreadable(f"unsupported format ({suffix or 'no extension'})")
    found = sniff(path)
    if found == promised or (found == "text" and promised in TEXT_KINDS):
        return promised
    what = DESCRIBED[found]
    if found == "text" and _looks_like_html(path):
        what = "an HTML page"
    raise Unreadable(
        f"named {suffix} but holds {what}, so it was not read"
        + ("; rename it to match its content" if found in ("pdf", "docx", "image") else "")
    )


def _looks_like_html(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(_HEAD).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<body" in head
