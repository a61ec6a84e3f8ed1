"""A SQLite file for this account's eyes only: the users, their keys and who reads what."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path


def connect(path: Path, schema: Iterable[str], timeout: float = 10) -> sqlite3.Connection:
    """Open ``path`` (made with mode 600 if new) and create the tables of ``schema``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    db = sqlite3.connect(path, timeout=timeout)
    if fresh:
        os.chmod(path, 0o600)  # password hashes, key digests, access rights
    for statement in schema:
        db.execute(statement)
    return db
