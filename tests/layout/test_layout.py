"""The codebase keeps the shape it promises: a thin app, and each outside library
behind the one module that owns it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
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


# README "How it works" lists every module, one line each, from its docstring's first
# sentence, package by package in the layer order of pyproject.toml's import-linter
# contract. `python tests/layout/test_layout.py` writes that list into README.md again.
BEGIN = "<!-- modules: written by `python tests/layout/test_layout.py` from the docstrings -->"
END = "<!-- end of modules -->"


def _first_sentence(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split()).replace("``", "`")
    return re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", paragraph)[0]


def _package_order() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    layers = pyproject["tool"]["importlinter"]["contracts"][0]["layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def module_list() -> list[str]:
    """One Markdown line per module of rag/ (and ingest/, app*.py), by package."""
    lines, seen = [], set()

    def add(path: Path) -> None:
        if path not in seen:
            seen.add(path)
            lines.append(f"- `{path.relative_to(ROOT).as_posix()}`: {_first_sentence(path)}")

    for app in sorted(ROOT.glob("app*.py")):
        add(app)
    for name in _package_order():
        base = ROOT / name.replace(".", "/")
        if base.is_dir():
            for path in sorted(base.rglob("*.py"), key=lambda p: (p.parent != base, p.parts)):
                add(path)
        elif base.with_suffix(".py").is_file():
            add(base.with_suffix(".py"))
    for path in sorted((ROOT / "rag").rglob("*.py")):  # whatever no layer names yet
        add(path)
    return lines


def _readme_modules(text: str) -> list[str]:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip().splitlines()


def test_every_module_is_in_the_readme_how_it_works():
    listed = "\n".join(_readme_modules((ROOT / "README.md").read_text()))
    modules = [line.split("`")[1] for line in module_list()]
    missing = [m for m in modules if f"`{m}`" not in listed]
    gone = [p for p in re.findall(r"^- `([^`]+)`", listed, re.M) if not (ROOT / p).is_file()]
    assert len(modules) > 50, "the check looks where it should"
    assert missing == [] and gone == [], (
        f"README How it works: missing {missing}, no longer there {gone}; "
        "run `python tests/layout/test_layout.py` to write the list again"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    readme = ROOT / "README.md"
    text = readme.read_text()
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(before + BEGIN + "\n" + "\n".join(module_list()) + "\n" + END + after)
