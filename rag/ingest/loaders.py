"""Reading files into text sections: the entry point the pipeline and uploads use.

The readers live in ``rag.ingest.readers``, one module per format; this module keeps
the names the rest of the code imports.
"""

from __future__ import annotations

from rag.ingest.readers import FORMATS, READERS, is_supported, load
from rag.ingest.readers.markdown import markdown_sections
from rag.ingest.readers.text import decode
from rag.ingest.readers.types import Block, Loaded, ReadOptions, Section, Unreadable

__all__ = [
    "FORMATS",
    "READERS",
    "Block",
    "Loaded",
    "ReadOptions",
    "Section",
    "Unreadable",
    "decode",
    "is_supported",
    "load",
    "markdown_sections",
]
