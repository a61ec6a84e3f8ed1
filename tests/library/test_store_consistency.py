"""The word index stays in step with Chroma while other processes open the library."""

import json
import os
import subprocess
import sys

from chromadb.api.models.Collection import Collection

from rag.ingest.pipeline import Ingestor, discover
from rag.library import word_index

# Opening the library from another process, as `rag query`, `rag serve` or the app do.
# The embedder is a stand-in that only names the model: opening never embeds.
OPENER = """
import sys
from pathlib import Path
from rag.config import Settings
from rag.library.live import open_library

class Named:
    name = "all-MiniLM-L6-v2"

open_library(Settings(index=Path(sys.argv[1]), collection=sys.argv[2]), Named())
"""


def _open_elsewhere(settings):
    done = subprocess.run(
        [sys.executable, "-c", OPENER, str(settings.index), settings.collection],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _word_index_ids(settings):
    index = word_index.LexicalIndex(word_index.lexical_path(settings.index, settings.collection))
    try:
        return index.ids()
    finally:
        index.close()


def test_opening_the_library_between_the_writes_of_a_batch_loses_no_words(
    library, settings, tmp_path, monkeypatch, processes
):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"note{i}.txt").write_text(f"Note {i} is about the quarry number q{i}x.\n")
    upsert = Collection.upsert
    opened = []

    def upsert_after_an_open(self, *args, **kwargs):
        # The window the issue describes: this process is between its two writes.
        if not opened:
            opened.append(True)
            _open_elsewhere(settings)
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", upsert_after_an_open)
    Ingestor(library, batch_chunks=1).run(discover([docs]), progress=False)
    assert opened
    report = library.store.check()
    assert report.chunks_in_chroma == report.chunks_in_word_index == 3
    assert report.consistent, report.as_dict()
    assert len(_word_index_ids(settings)) == 3


def test_rag_check_reports_and_repairs_without_loading_a_model(
    library, settings, tmp_path, processes
):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Apples ripen in the autumn sun.\n")
    Ingestor(library).run(discover([docs]), progress=False)
    library.store.close()
    words = word_index.LexicalIndex(word_index.lexical_path(settings.index, settings.collection))
    words.drop_documents([str(docs / "a.txt")])  # as a lost word index would be
    words.close()
    script = (
        "import sys, json; from rag.cli import main; code = main(sys.argv[1:]); "
        "loaded = [m for m in ('rag.embeddings.embedder', 'sentence_transformers', 'torch') "
        "if m in sys.modules]; print(json.dumps({'code': code, 'loaded': loaded}))"
    )
    env = {**os.environ, "RAG_INDEX": str(settings.index), "RAG_COLLECTION": settings.collection}

    def check(*flags):
        done = subprocess.run(
            [sys.executable, "-c", script, "check", "--json", *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        return json.loads("\n".join(lines[:-1])), json.loads(lines[-1])

    report, run = check()
    assert run == {"code": 1, "loaded": []}
    assert report["versions_disagree"] == [str(docs / "a.txt")]
    assert report["chunks_in_chroma"] == 1 and report["chunks_in_word_index"] == 0
    report, run = check("--repair")
    assert run == {"code": 0, "loaded": []} and report["consistent"]
    assert check()[1]["code"] == 0
