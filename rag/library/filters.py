"""Restricting a search to some documents, named by path or glob.

Sources are stored as absolute paths. A pattern selects a source when it
matches the path or one of its folders, from the right as ``PurePath.match``
does: ``manuals/*.pdf`` selects ``/home/ana/docs/manuals/a.pdf``, ``manuals``
selects everything below any folder of that name, and an absolute pattern
(``/home/ana/docs/report.pdf``, ``~/docs``) must match from the root.
Chroma has no glob filter, so patterns are resolved here to a list of sources.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import PurePath


def _normal(pattern: str) -> str:
    pattern = os.path.expanduser(pattern.strip())
    if pattern.startswith(("./", "../")) or pattern in (".", ".."):
        return os.path.abspath(pattern)  # relative to here, as a shell user means it
    return pattern.rstrip("/") or "/"


def selects(pattern: str, source: str) -> bool:
    path = PurePath(source)
    return any(p.match(pattern) for p in (path, *path.parents) if p.name)


def matching(sources: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The sources any pattern selects, in their given order."""
    wanted = [_normal(p) for p in patterns if p.strip()]
    return [s for s in sources if any(selects(p, s) for p in wanted)]
