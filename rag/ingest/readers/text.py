"""Plain text in any common encoding."""

from __future__ import annotations

from pathlib import Path

from rag.ingest.readers.types import Loaded, ReadOptions, Section, Unreadable


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


def read_text(path: Path) -> str:
    text = decode(path.read_bytes())
    if not text.strip():
        raise Unreadable("empty file")
    return text


def read(path: Path, options: ReadOptions) -> Loaded:
    return Loaded([Section(read_text(path))])
