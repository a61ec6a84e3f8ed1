"""The word index stays in step with Chroma while other processes open the library."""

import os
import subprocess
import sys

import pytest
from chromadb.api.models.Collection import Collection

from ingest.pipeline import Ingestor, discover
from rag import lexical

# Opening the library from another process, as `rag query`, `rag serve` or the app do.
# The embedder is a stand-in that only names the model: opening never embeds.
OPENER = """
import sys
from pathlib import Path
from rag.config import Settings
from rag.library import open_library

class Named:
    name = "all-MiniLM-L6-v2"

open_library(Settings(index=Path(sys.argv[1]), collection=sys.argv[2]), Named())
"""


def _open_elsewhere(settings):
    done = subprocess.run([sys.executable, "-c", OPENER, str(settings.index), settings.collection],
                          capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr


def _word_index_ids(settings):
    index = lexical.LexicalIndex(lexical.lexical_path(settings.index, settings.collection))
    try:
        return index.ids()
    finally:
        index.close()


def test_opening_the_library_between_the_writes_of_a_batch_loses_no_words(
        library, settings, tmp_path, monkeypatch):
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
