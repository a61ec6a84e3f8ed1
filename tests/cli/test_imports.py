"""Each command imports what its work needs: listing never loads a model, and a
query embeds with onnxruntime, never torch, transformers or sentence-transformers.

Each command runs in a fresh interpreter (imports are per process) that reports
which heavy modules it ended up with.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.cli import _parser
from rag.ingest.pipeline import Ingestor, discover

pytestmark = pytest.mark.integration  # each command runs in a fresh interpreter

HEAVY = ("torch", "transformers", "sentence_transformers")
MODEL_RUNTIMES = ("onnxruntime", "onnxruntime_genai")

# Runs the command in-process, then prints the heavy modules it imported.
_PROBE = """
import json, sys
from rag.cli import main
code = main(sys.argv[1:])
watched = {watched!r}
print("IMPORTED=" + json.dumps([m for m in watched if m in sys.modules]))
sys.exit(code)
"""


def imported_by(args: list[str], index: Path) -> list[str]:
    env = {**os.environ, "RAG_INDEX": str(index), "RAG_COLLECTION": "test"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(watched=HEAVY + MODEL_RUNTIMES), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr  # forget of an unknown path exits 1
    line = next(x for x in done.stdout.splitlines() if x.startswith("IMPORTED="))
    return json.loads(line.removeprefix("IMPORTED="))


@pytest.fixture(scope="module")
def index(tmp_path_factory, embedder) -> Path:
    from rag.config import Settings
    from rag.library.live import open_library

    folder = tmp_path_factory.mktemp("imports")
    doc = folder / "docs" / "note.md"
    doc.parent.mkdir()
    doc.write_text("# Note\n\nThe router resets when its button is held for ten seconds.\n")
    library = open_library(Settings(index=folder / "index", collection="test"), embedder)
    Ingestor(library).run(discover([doc.parent]), progress=False)
    return folder / "index"


def _commands() -> set[str]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


@pytest.mark.parametrize(
    "args",
    [
        ["sources"],
        ["forget", "/nowhere/else.md"],
        ["check"],
    ],
)
def test_listing_and_forgetting_load_no_model(args, index):
    if args[0] not in _commands():
        pytest.skip(f"rag {args[0]} does not exist on this branch")
    assert imported_by(args, index) == []


def test_query_embeds_without_torch(index):
    imported = imported_by(["query", "how do I reset the router?"], index)
    assert "onnxruntime" in imported  # it did embed the question
    assert not set(imported) & set(HEAVY), imported
