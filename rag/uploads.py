"""Files dropped into one chat: a private library of their own, gone when the chat ends.

Each chat gets a temporary folder with its own Chroma index and lexical index,
so no other chat (and no other user) can ever retrieve them. They go through
the same ingest pipeline as the shared library, and are marked private: their
text is never sent to a model off this machine.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ingest.loaders import is_supported
from ingest.pipeline import Ingestor, Target
from rag.config import Settings
from rag.embeddings import Embedder
from rag.library import Library, open_library

ORIGIN = "upload"


@dataclass(frozen=True)
class ChatUploads:
    folder: Path
    library: Library


def create(settings: Settings, embedder: Embedder) -> ChatUploads:
    folder = Path(tempfile.mkdtemp(prefix="rag-chat-"))
    # Always the embedded store: a chat's files never go to a shared Chroma server.
    own = settings.model_copy(update={"index": folder / "index", "collection": "uploads",
                                      "sources": [], "chroma_url": None})
    return ChatUploads(folder, open_library(own, embedder))


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^\w.\- ]+", "_", Path(name).name).strip(" .") or "upload"
    return stem[:120]


def add(uploads: ChatUploads, path: str, name: str) -> str:
    """Ingest one uploaded file; return one sentence for the chat."""
    # Chainlit stores uploads under random names and deletes them at the session's
    # end; a copy under the real name gives sources a name people recognise.
    target = uploads.folder / "files" / _safe_name(name)
    if not is_supported(target):
        return f"**{name}**: not added; this format is not supported (PDF, Markdown, text)."
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, target)
    summary = Ingestor(
        uploads.library, extra_metadata={"origin": ORIGIN}, private=True
    ).run(Target([target], [], []), prune=False, progress=False)
    if summary.failed:
        return f"**{name}** could not be read: {summary.failed[str(target)]}."
    chunks = summary.chunks_written
    return f"Added **{name}** to this chat ({chunks} passage{'s' if chunks != 1 else ''})."


def discard(uploads: ChatUploads) -> None:
    uploads.library.store.close()
    shutil.rmtree(uploads.folder, ignore_errors=True)
