"""The codebase keeps the shape it promises: a thin app, and each outside library
behind the one module that owns it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = sorted(
    p for folder in ("rag", "ingest", "benchmarks") for p in (ROOT / folder).rglob("*.py")
) + sorted(ROOT.glob("*.py"))


def importers(package: str) -> set[str]:
    """The files (relative to the root) that import ``package`` or one of its modules."""
    found = set()
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n == package or n.startswith(package + ".") for n in names):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_app_stays_thin():
    assert len((ROOT / "app.py").read_text().splitlines()) < 150


def test_chromadb_is_used_only_by_the_store():
    assert importers("chromadb") == {"rag/store.py"}


def test_chainlit_is_used_only_by_the_app():
    assert importers("chainlit") <= {"app.py", "app_datalayer.py", "app_login.py"}
    assert "app.py" in importers("chainlit")  # the check looks where it should


def test_every_setting_is_in_the_readme_settings_table():
    from rag.config import Settings

    rows = {
        line.split("`")[1]
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `RAG_")
    }
    assert {f"RAG_{name.upper()}" for name in Settings.model_fields} <= rows
