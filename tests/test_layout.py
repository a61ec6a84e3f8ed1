"""The codebase keeps the shape it promises: a thin app, and each outside library
behind the one module that owns it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def _decorators(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    return [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]


def test_the_app_defines_only_chainlit_handlers():
    """app.py is glue: each function it defines is a Chainlit handler (``@cl.on_message``
    and kin) or a private helper of those handlers; classes and logic live in rag/."""
    tree = ast.parse((ROOT / "app.py").read_text())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    handlers = [f for f in functions if any(d.startswith("cl.") for d in _decorators(f))]
    others = [f.name for f in functions if f not in handlers and not f.name.startswith("_")]
    assert handlers, "the check looks where it should"
    assert others == [], f"app.py functions that are not Chainlit handlers: {others}"
    assert not [n for n in tree.body if isinstance(n, ast.ClassDef)], "classes belong in rag/"


def test_chromadb_is_used_only_by_the_store():
    found = importers("chromadb")
    assert found and all(f.startswith("rag/library/store/") for f in found), found


def test_chainlit_is_used_only_by_the_app():
    found = importers("chainlit")
    assert all("/" not in f and f.startswith("app") for f in found), found  # app*.py
    assert "app.py" in importers("chainlit")  # the check looks where it should


def test_every_setting_is_in_the_readme_settings_table():
    from rag.config import Settings

    rows = {
        line.split("`")[1]
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `RAG_")
    }
    assert {f"RAG_{name.upper()}" for name in Settings.model_fields} <= rows
