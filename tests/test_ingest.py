import json
import os
import signal
import subprocess
import sys
import time

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from ingest.pipeline import Ingestor, discover, forget
from rag import store
from rag.lexical import LexicalIndex, lexical_path
from testdocs import encrypt_pdf, truncate, write_pdf


def ingest(library, *paths, **kw):
    target = discover(paths, exclude=[kw.pop("exclude", paths[0] / "index")])
    return Ingestor(library, **kw).run(target, progress=False)


def ids_by_source(collection):
    found = {}
    for id_, meta in store.all_metadata(collection):
        found.setdefault(meta["source"], set()).add(id_)
    return found


def test_sample_folder_is_ingested_with_metadata(library, sample_docs):
    summary = ingest(library, sample_docs)
    assert summary.failed == {} and summary.exit_code == 0
    assert len(summary.added) == 4
    counts = store.source_counts(library.collection)
    assert set(counts) == {str(p) for p in discover([sample_docs]).files}
    pdf_pages = {
        meta["page"]
        for _, meta in store.all_metadata(library.collection)
        if meta["source"].endswith(".pdf")
    }
    assert pdf_pages == {1, 2, 3}


def test_unchanged_folder_embeds_nothing(library, sample_docs):
    first = ingest(library, sample_docs)
    before = ids_by_source(library.collection)
    again = ingest(library, sample_docs)
    assert again.chunks_written == 0 and len(again.unchanged) == len(first.added)
    assert "nothing changed" in again.render()
    assert ids_by_source(library.collection) == before


def test_modified_deleted_and_added_files_are_reflected(library, sample_docs):
    ingest(library, sample_docs)
    before = ids_by_source(library.collection)
    changed = sample_docs / "notes" / "tea-garden.txt"
    changed.write_text("The Hollow Brook garden now grows coffee, not tea.\n")
    deleted = sample_docs / "policies" / "travel-policy.md"
    deleted.unlink()
    added = sample_docs / "notes" / "new.md"
    added.write_text("# New\n\nThe new note mentions quokkas.\n")

    summary = ingest(library, sample_docs)

    after = ids_by_source(library.collection)
    assert summary.updated == [str(changed)]
    assert summary.added == [str(added)]
    assert summary.removed == [str(deleted)]
    assert str(deleted) not in after
    assert after[str(changed)].isdisjoint(before[str(changed)])
    texts = library.collection.get(ids=list(after[str(changed)]))["documents"]
    assert texts == ["The Hollow Brook garden now grows coffee, not tea."]
    untouched = str(sample_docs / "guides" / "local-rag-chat-setup.md")
    assert after[untouched] == before[untouched]


def test_bad_files_are_reported_and_the_rest_is_ingested(library, tmp_path):
    docs = tmp_path / "mixed"
    docs.mkdir()
    good = write_pdf(docs / "good.pdf", ["A readable page about herons.", ""])
    encrypt_pdf(write_pdf(tmp_path / "plain.pdf", ["Secret."]), docs / "locked.pdf")
    truncate(write_pdf(tmp_path / "full.pdf", ["Text."] * 4), docs / "broken.pdf")
    (docs / "empty.txt").write_text("")
    (docs / "song.mp3").write_bytes(b"ID3\x04\x00")  # images are read now (OCR); audio is not
    (docs / ".hidden.md").write_text("# Hidden\n\nnever ingested")

    summary = ingest(library, docs)

    assert summary.exit_code == 1
    assert summary.added == [str(good)]
    assert summary.pages_without_text == {str(good): 1}
    assert set(summary.failed) == {str(docs / n) for n in ("locked.pdf", "broken.pdf", "empty.txt")}
    assert "encrypted" in summary.failed[str(docs / "locked.pdf")]
    assert len(summary.unsupported) == 1
    report = summary.render()
    assert "locked.pdf" in report and "everything else was saved" in report


def test_index_folder_inside_the_documents_is_never_ingested(library, settings, sample_docs):
    index_inside = sample_docs / "index"
    (index_inside).mkdir()
    (index_inside / "stray.md").write_text("# Stray\n\nshould not be read")
    summary = ingest(library, sample_docs, exclude=index_inside)
    assert len(summary.added) == 4
    assert not any(p.startswith(str(index_inside)) for p in store.source_counts(library.collection))


def test_forget_removes_a_document(library, sample_docs):
    ingest(library, sample_docs)
    pdf = sample_docs / "reports" / "harbor-street-solar-report.pdf"
    assert forget(library, [pdf]) == [str(pdf)]
    assert str(pdf) not in store.source_counts(library.collection)


def _corpus(folder, files=120):
    folder.mkdir()
    for i in range(files):
        lines = [f"Document {i}, paragraph {p}: the warehouse number {i * 7 + p} stores "
                 f"{p + 3} crates of equipment for project {i % 13}." for p in range(24)]
        (folder / f"doc{i:03}.txt").write_text("\n\n".join(lines))
    return folder


def _run_ingest(folder, index, **popen):
    env = {**os.environ, "RAG_INDEX": str(index), "RAG_COLLECTION": "test"}
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", str(folder), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def _collection(index):
    client = chromadb.PersistentClient(str(index), settings=ChromaSettings(anonymized_telemetry=False))
    return client.get_collection("test")


def _lexical_ids(index):
    lexical = LexicalIndex(lexical_path(index, "test"))
    try:
        return lexical.ids()
    finally:
        lexical.close()


def test_ingest_killed_mid_run_then_rerun_matches_a_clean_ingest(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    index = tmp_path / "killed"
    proc = _run_ingest(corpus, index)
    deadline = time.monotonic() + 240
    written = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            written = _collection(index).count()
        except Exception:  # noqa: BLE001 - the collection may not exist yet
            written = 0
        if written:
            break
        time.sleep(0.05)  # between polls of the condition
    assert proc.poll() is None, "ingest finished before it could be interrupted"
    assert written, "ingest wrote no chunk within 240 s"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Lexical first, Chroma second: a kill leaves the lexical index a superset, never short.
    assert _lexical_ids(index) >= set(_collection(index).get()["ids"])

    rerun = _run_ingest(corpus, index)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert json.loads(out)["chunks_written"] > 0

    clean = _run_ingest(corpus, tmp_path / "clean")
    clean.communicate(timeout=600)
    assert clean.returncode == 0
    killed_ids = set(_collection(index).get()["ids"])
    clean_ids = set(_collection(tmp_path / "clean").get()["ids"])
    assert 0 < written < len(clean_ids)
    assert killed_ids == clean_ids
    assert _lexical_ids(index) == _lexical_ids(tmp_path / "clean") == clean_ids


def test_markdown_chunks_carry_nested_heading_paths(library, tmp_path):
    docs = tmp_path / "md"
    docs.mkdir()
    (docs / "guide.md").write_text(
        "# Guide\n\nWelcome.\n\n## Install\n\nGeneral steps.\n\n### Windows\n\n"
        "Use PowerShell and winget.\n\n### Linux\n\nUse apt.\n\n## Use\n\nAsk questions.\n"
    )
    ingest(library, docs)
    got = library.collection.get(include=["documents", "metadatas"])
    headings = {m["heading"] for m in got["metadatas"]}
    assert headings == {"Guide", "Guide > Install", "Guide > Install > Windows",
                        "Guide > Install > Linux", "Guide > Use"}
    windows = [d for d, m in zip(got["documents"], got["metadatas"])
               if m["heading"] == "Guide > Install > Windows"]
    assert windows == ["### Windows\n\nUse PowerShell and winget."]
