"""Files dropped into one chat: a private library of their own, gone when the chat ends.

Each chat gets a folder with its own Chroma index and lexical index, so no other
chat (and no other user) can ever retrieve them. With a shared Chroma server and
chat history (``RAG_CHROMA_URL`` and ``RAG_DATABASE_URL``: stateless replicas) the
chunks go to a collection of the chat's own on the server instead, the folder keeping
only the local word index, a cache; so any replica can resume the chat with its files.
A stored chat's folder lives under the chats folder (rag/conversations/chat_store.py)
and is reopened when the chat is resumed; it is deleted with the chat. Without a folder
given, a temporary one is used. They go through the same ingest pipeline as the shared
library, and are marked private: their text is never sent to a model off this machine.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.embeddings.embedder import Embedder
from rag.errors import RagError
from rag.ingest.loaders import FORMATS, Unreadable, is_supported
from rag.ingest.pipeline import Ingestor, Target
from rag.ingest.readers import check
from rag.ingest.sandbox import Limits, Sandbox
from rag.library.access import Reader
from rag.library.live import Library, open_library
from rag.library.shelf import Shelf
from rag.library.store import drop_library, library_exists

ORIGIN = "upload"
__all__ = [
    "FORMATS",
    "ORIGIN",
    "ChatUploads",
    "add",
    "add_for",
    "add_to_library",
    "create",
    "discard",
    "refused",
]


@dataclass(frozen=True)
class ChatUploads:
    folder: Path
    library: Library


def shared(settings: Settings) -> bool:
    """Whether chats' files live on the shared Chroma server: with a server and a shared
    chat history (``RAG_DATABASE_URL``) a chat may be resumed on any replica, and its
    files must be there too. Otherwise they stay in the chat's folder on this machine."""
    return bool(settings.chroma_url and settings.database_url)


def _own_settings(settings: Settings, folder: Path) -> Settings:
    """The chat's library: its own collection on the server (named by the chat's folder,
    the chat id), or its own embedded index in the folder. Either way the folder holds
    the local word index."""
    on_server = shared(settings)
    return settings.model_copy(
        update={
            "index": folder / "index",
            "collection": f"chat-{folder.name}" if on_server else "uploads",
            "sources": [],
            "chroma_url": settings.chroma_url if on_server else None,
        }
    )


def exists(settings: Settings, folder: Path) -> bool:
    """Whether the chat stored in ``folder`` has files (here, or on the shared server)."""
    if shared(settings):
        return library_exists(_own_settings(settings, folder))
    return (folder / "index").is_dir()


def create(settings: Settings, embedder: Embedder, folder: Path | None = None) -> ChatUploads:
    """The chat's library in ``folder`` (made, or reopened with its files)."""
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="rag-chat-"))
    folder.mkdir(parents=True, exist_ok=True)
    return ChatUploads(folder, open_library(_own_settings(settings, folder), embedder))


def delete(settings: Settings, folder: Path) -> None:
    """A chat's files, wherever they are: its folder, and its collections on the server."""
    if shared(settings):
        drop_library(_own_settings(settings, folder))
    shutil.rmtree(folder, ignore_errors=True)


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^\w.\- ]+", "_", Path(name).name).strip(" .") or "upload"
    return stem[:120]


def add(uploads: ChatUploads, path: str, name: str) -> str:
    """Ingest one uploaded file; return one sentence for the chat."""
    return _add(uploads.library, uploads.folder / "files", path, name, True, "this chat")


def add_to_library(library: Library, folder: Path, path: str, name: str) -> str:
    """Ingest one uploaded file into a shared library (#24), its copy kept in ``folder``
    (the document's source); the caller checked that its reader may write there."""
    where = f"the library {library.settings.collection}"
    return _add(library, folder, path, name, False, where)


def add_for(shelf: Shelf, reader: Reader, library: str, path: str, name: str) -> str:
    """``add_to_library`` for ``reader``, when the access record says, now, that they may
    write to ``library``; the copy is kept under the index, in library-files/."""
    try:
        if library not in shelf.writable(reader):
            return f"**{name}** was not added: you may not add to the library {library}."
        folder = shelf.settings.index / "library-files" / library
        return add_to_library(shelf.library(library), folder, path, name)
    except RagError as exc:
        return f"**{name}** could not be added: {exc}"


def _add(library: Library, folder: Path, path: str, name: str, private: bool, where: str) -> str:
    # Chainlit stores uploads under random names and deletes them at the session's
    # end; a copy under the real name gives sources a name people recognise.
    target = folder / _safe_name(name)
    settings = library.settings
    refusal = refused(Path(path), target.name, settings.max_file_mb, _limits(settings))
    if refusal:
        return f"**{name}**: not added; {refusal}."
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    # Read in a worker process with the settings' limits, as ingest reads: a hostile
    # upload fails alone and cannot take the app down.
    summary = Ingestor(library, extra_metadata={"origin": ORIGIN}, private=private).run(
        Target([target], [], []), prune=False, progress=False
    )
    if summary.failed or shared(settings):
        # Failed: not one of the chat's files. Shared: its text is on the server, which
        # every replica reads; a copy left here would outlive the chat deleted elsewhere.
        target.unlink(missing_ok=True)
    if summary.failed:
        return f"**{name}** could not be read: {summary.failed[str(target)]}."
    chunks = summary.chunks_written
    return f"Added **{name}** to {where} ({chunks} passage{'s' if chunks != 1 else ''})."


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
    if shared(uploads.library.settings):  # added on any replica: the documents table says
        return sorted(Path(s).name for s in uploads.library.store.documents())
    files = uploads.folder / "files"
    return sorted(p.name for p in files.iterdir()) if files.is_dir() else []


def discard(uploads: ChatUploads) -> None:
    uploads.library.store.close()
    delete(uploads.library.settings, uploads.folder)
