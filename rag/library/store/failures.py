"""Chroma, SQLite and network failures turned into one sentence saying what to do,
and the guards that apply it to every store method."""

from __future__ import annotations

import errno
import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
from chromadb.errors import ChromaError

from rag.errors import RagError
from rag.library.store.protocol import _DAMAGE_WORDS, _LOW_DISK_MB, IndexDamaged, _is_chroma

# -- the store -----------------------------------------------------------------------


def plain_error(exc: Exception, backend: str, index: Path) -> RagError | None:
    """A Chroma server gone, a full disk, or files Chroma cannot read, in a sentence that
    says what to do; None for other failures."""
    text = str(exc)
    what = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    if isinstance(exc, httpx.TransportError) or "Could not connect to a Chroma" in text:
        return RagError(
            f"The Chroma server of the index ({backend}) stopped answering ({what}): start "
            "it again, then run the command again; `rag check --repair` finishes what an "
            "interrupted write began."
        )
    free = _free_mb(index)
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or any(
        w in text.lower() for w in ("disk is full", "no space left")
    )
    if full or (free is not None and free < _LOW_DISK_MB and _is_chroma(exc)):
        return RagError(
            f"The disk of the index {index} is full ({free} MB free; {what}): free some "
            "space, then run `rag check --repair`."
        )
    if _is_chroma(exc) and any(w in text.lower() for w in _DAMAGE_WORDS):
        return IndexDamaged(
            f"The index ({backend}) is damaged, as a full disk can leave it ({what}): "
            "run `rag check --repair` to rebuild it."
        )
    return None


def _free_mb(index: Path) -> int | None:
    try:
        return shutil.disk_usage(index).free // 2**20
    except OSError:
        return None


class _Guarded(Protocol):
    """What the guards below need of the store they wrap (``ChromaStore``)."""

    def _plain(self, exc: Exception) -> RagError | None: ...

    def _reopen(self) -> None: ...


def _plainly(method: Callable) -> Callable:
    """Chroma's, SQLite's and the network's failures as a sentence that says what to do
    (``ChromaStore._plain``); other errors pass as they are."""

    @functools.wraps(method)
    def call(self: _Guarded, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RagError:
            raise
        except Exception as exc:
            plain = self._plain(exc)
            if plain is None:
                raise
            raise plain from exc

    return call


def _reopening(method: Callable) -> Callable:
    """Retry a read after reopening the client. The embedded client's per-process caches
    can trail another process's write between our look at the files and the read
    ("Error finding id"); a fresh client reads the files as they are now."""

    @functools.wraps(method)
    def read(self: _Guarded, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(3):
            try:
                return method(self, *args, **kwargs)
            except ChromaError:
                if attempt == 2:
                    raise
                self._reopen()
        raise AssertionError("unreachable")

    return read
