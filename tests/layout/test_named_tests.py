"""Every test the documents name (SECURITY.md proves each defence with one) exists where
they say, so that moving or renaming a test cannot leave a defence without its proof."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")


def named_tests() -> list[tuple[str, str, str | None]]:
    found = []
    for doc in ("SECURITY.md", "README.md"):
        for path, name in NAMED.findall((ROOT / doc).read_text(encoding="utf-8")):
            found.append((doc, path, name or None))
    return found


def test_the_documents_name_tests():
    assert sum(name is not None for _, _, name in named_tests()) >= 40  # the check looks


def test_every_test_the_documents_name_exists():
    missing = []
    for doc, path, name in named_tests():
        file = ROOT / path
        if not file.is_file():
            missing.append(f"{doc}: {path}")
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        defined = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name and name not in defined:
            missing.append(f"{doc}: {path}::{name}")
    assert missing == []
