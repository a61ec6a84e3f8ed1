"""Files dropped into one chat: a private library of their own, gone when the chat ends.

Each chat gets a folder with its own Chroma index and lexical index, so no other
chat (and no other user) can ever retrieve them. A stored chat's folder lives
under the chats folder (rag/conversations/chat_store.py) and is reopened when the chat is resumed;
it is deleted with the chat. Without a folder given, a temporary one is used. They go through
the same ingest pipeline as the shared library, and are marked private: their
text is never sent to a model off this machine.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.embeddings.embedder import Embedder
from rag.ingest.loaders import FORMATS, Unreadable, is_supported
from rag.ingest.pipeline import Ingestor, Target
from rag.ingest.readers import check
from rag.ingest.sandbox import Limits, Sandbox
from rag.library.live import Library, open_library

ORIGIN = "upload"
__all__ = ["FORMATS", "ORIGIN", "ChatUploads", "add", "create", "discard", "refused"]


@dataclass(frozen=True)
class ChatUploads:
    folder: Path
    library: Library


def create(settings: Settings, embedder: Embedder, folder: Path | None = None) -> ChatUploads:
    """The chat's library in ``folder`` (made, or reopened with its files)."""
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="rag-chat-"))
    folder.mkdir(parents=True, exist_ok=True)
    # Always the embedded store: a chat's files never go to a shared Chroma server.
    own = settings.model_copy(
        update={
            "index": folder / "index",
            "collection": "uploads",
            "sources": [],
            "chroma_url": None,
        }
    )
    return ChatUploads(folder, open_library(own, embedder))


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^\w.\- ]+", "_", Path(name).name).strip(" .") or "upload"
    return stem[:120]


def add(uploads: ChatUploads, path: str, name: str) -> str:
    """Ingest one uploaded file; return one sentence for the chat."""
    # Chainlit stores uploads under random names and deletes them at the session's
    # end; a copy under the real name gives sources a name people recognise.
    target = uploads.folder / "files" / _safe_name(name)
    settings = uploads.library.settings
    refusal = refused(Path(path), target.name, settings.max_file_mb, _limits(settings))
    if refusal:
        return f"**{name}**: not added; {refusal}."
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, target)
    # Read in a worker process with the settings' limits, as ingest reads: a hostile
    # upload fails alone and cannot take the app down.
    summary = Ingestor(uploads.library, extra_metadata={"origin": ORIGIN}, private=True).run(
        Target([target], [], []), prune=False, progress=False
    )
    if summary.failed:
        target.unlink(missing_ok=True)  # not one of the chat's files
        return f"**{name}** could not be read: {summary.failed[str(target)]}."
    chunks = summary.chunks_written
    return f"Added **{name}** to this chat ({chunks} passage{'s' if chunks != 1 else ''})."


def refused(path: Path, name: str, max_mb: int, limits: Limits | None = None) -> str | None:
    """Why an uploaded file is not read, checked on the server before anything is copied:
    its name must be of a format ingest reads, its size within the limit, and its bytes
    what the name says (the reader is chosen by content, never by the name alone).
    Checked in a reader process too: telling a DOCX from a ZIP reads the archive's index."""
    if not is_supported(Path(name)):
        return f"this format is not supported ({FORMATS})"
    try:
        with Sandbox(limits or Limits()) as sandbox:
            sandbox.call(check, path, max_mb * 2**20, name)
    except Unreadable as exc:
        return str(exc)
    return None


def _limits(settings: Settings) -> Limits:
    return Limits(settings.read_memory_mb, settings.read_timeout_s)


def names(uploads: ChatUploads) -> list[str]:
    """The files attached to the chat so far."""
    files = uploads.folder / "files"
    return sorted(p.name for p in files.iterdir()) if files.is_dir() else []


def discard(uploads: ChatUploads) -> None:
    uploads.library.store.close()
    shutil.rmtree(uploads.folder, ignore_errors=True)
