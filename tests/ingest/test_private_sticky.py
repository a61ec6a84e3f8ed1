"""Private status follows the document: re-ingesting without the flag keeps it private."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # the `rag` command as a process


def rag(*args, index):
    env = {**os.environ, "RAG_INDEX": str(index), "RAG_COLLECTION": "test"}
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def private_of(index):
    return {d["source"]: d["private"] for d in json.loads(rag("sources", "--json", index=index))}


def test_a_private_document_stays_private_until_made_shareable(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    diary = docs / "diary.txt"
    diary.write_text("Dear diary, the heron came back to the pond today.\n")
    (docs / "recipe.txt").write_text("Bake the rye bread for forty minutes.\n")
    index = tmp_path / "index"

    rag("ingest", "--private", diary, index=index)
    rag("ingest", docs, index=index)
    assert private_of(index) == {str(diary): True, str(docs / "recipe.txt"): False}
    assert f"{diary}  (private)" in rag("sources", index=index)

    rag("ingest", "--shareable", diary, index=index)
    assert private_of(index) == {str(diary): False, str(docs / "recipe.txt"): False}
    assert "(private)" not in rag("sources", index=index)
