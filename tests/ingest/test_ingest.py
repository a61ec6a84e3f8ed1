import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from rag.config import Settings
from rag.ingest.pipeline import Ingestor, discover, forget
from rag.library import store
from rag.library.documents import SqliteCatalog, catalog_path
from rag.library.store import open_store

from testdocs import encrypt_pdf, truncate, write_pdf


def ingest(library, *paths, **kw):
    target = discover(paths, exclude=[kw.pop("exclude", paths[0] / "index")])
    return Ingestor(library, **kw).run(target, progress=False)


def ids_by_source(library_store):
    return {s: {c.id for c in library_store.document_chunks(s)} for s in library_store.documents()}


def all_chunks(library_store):
    return [c for s in library_store.documents() for c in library_store.document_chunks(s)]


def test_sample_folder_is_ingested_with_metadata(library, sample_docs):
    summary = ingest(library, sample_docs)
    assert summary.failed == {} and summary.exit_code == 0
    assert len(summary.added) == 4
    counts = store.source_counts(library.store)
    assert set(counts) == {str(p) for p in discover([sample_docs]).files}
    pdf_pages = {c.page for c in all_chunks(library.store) if c.source.endswith(".pdf")}
    assert pdf_pages == {1, 2, 3}


def test_unchanged_folder_embeds_nothing(library, sample_docs):
    first = ingest(library, sample_docs)
    before = ids_by_source(library.store)
    again = ingest(library, sample_docs)
    assert again.chunks_written == 0 and len(again.unchanged) == len(first.added)
    assert "nothing changed" in again.render()
    assert ids_by_source(library.store) == before


def test_modified_deleted_and_added_files_are_reflected(library, sample_docs):
    ingest(library, sample_docs)
    before = ids_by_source(library.store)
    changed = sample_docs / "notes" / "tea-garden.txt"
    changed.write_text("The Hollow Brook garden now grows coffee, not tea.\n")
    deleted = sample_docs / "policies" / "travel-policy.md"
    deleted.unlink()
    added = sample_docs / "notes" / "new.md"
    added.write_text("# New\n\nThe new note mentions quokkas.\n")

    summary = ingest(library, sample_docs)

    after = ids_by_source(library.store)
    assert summary.updated == [str(changed)]
    assert summary.added == [str(added)]
    assert summary.removed == [str(deleted)]
    assert str(deleted) not in after
    assert after[str(changed)].isdisjoint(before[str(changed)])
    texts = [c.text for c in library.store.document_chunks(str(changed))]
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
    assert not any(p.startswith(str(index_inside)) for p in store.source_counts(library.store))


def test_forget_removes_a_document(library, sample_docs):
    ingest(library, sample_docs)
    pdf = sample_docs / "reports" / "harbor-street-solar-report.pdf"
    assert forget(library, [pdf]) == [str(pdf)]
    assert str(pdf) not in store.source_counts(library.store)


def _corpus(folder, files=120):
    folder.mkdir()
    for i in range(files):
        lines = [
            f"Document {i}, paragraph {p}: the warehouse number {i * 7 + p} stores "
            f"{p + 3} crates of equipment for project {i % 13}."
            for p in range(24)
        ]
        (folder / f"doc{i:03}.txt").write_text("\n\n".join(lines))
    return folder


def _run_ingest(folder, index, **popen):
    env = {**os.environ, "RAG_INDEX": str(index), "RAG_COLLECTION": "test"}
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", str(folder), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _catalog(index):
    """(documents recorded, generation) of the documents table, (0, "") before it exists."""
    path = catalog_path(index, "test")
    if not path.exists():
        return 0, ""
    catalog = SqliteCatalog(path)
    try:
        return len(catalog.documents()), catalog.generation()
    finally:
        catalog.close()


def _state(index):
    """The recorded documents (each version and chunk count) and the check's report."""
    library_store = open_store(Settings(index=index, collection="test"))
    try:
        docs = {s: (d.version, d.chunks) for s, d in library_store.documents().items()}
        return docs, library_store.check()
    finally:
        library_store.close()


def _check(index):
    env = {**os.environ, "RAG_INDEX": str(index), "RAG_COLLECTION": "test"}
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "check", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, json.loads(done.stdout)


def _kill_when_writing(proc, index, delay: float = 0.0, documents: int = 0) -> int:
    """SIGKILL the ingest ``delay`` seconds after it first changes the documents table
    (and records at least ``documents`` documents)."""
    _, before = _catalog(index)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        recorded, generation = _catalog(index)
        if generation != before and recorded >= documents:
            break
        time.sleep(0.05)
    end = time.monotonic() + delay
    while time.monotonic() < end and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "ingest finished before it could be interrupted"
    written = _catalog(index)[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return written


def test_ingest_killed_mid_run_then_rerun_matches_a_clean_ingest(tmp_path, processes):
    corpus = _corpus(tmp_path / "corpus")
    index = tmp_path / "killed"
    written = _kill_when_writing(_run_ingest(corpus, index), index, documents=1)

    rerun = _run_ingest(corpus, index)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert json.loads(out)["chunks_written"] > 0

    clean = _run_ingest(corpus, tmp_path / "clean")
    clean.communicate(timeout=600)
    assert clean.returncode == 0
    killed_docs, killed_report = _state(index)
    clean_docs, clean_report = _state(tmp_path / "clean")
    assert 0 < written < len(clean_docs)
    # Chunk ids derive from (path, version, position): equal versions and counts in
    # consistent stores mean equal chunks in Chroma and in the word index.
    assert killed_docs == clean_docs
    assert killed_report.consistent and clean_report.consistent
    assert killed_report.chunks_in_chroma == clean_report.chunks_in_chroma
    assert _check(index)[0] == 0


def test_kill_9_at_random_moments_never_leaves_check_unclean_after_the_next_run(
    tmp_path, processes
):
    import random

    rng = random.Random(12)
    corpus = _corpus(tmp_path / "corpus", files=40)
    index = tmp_path / "index"
    for round_ in range(3):
        # Change some files each round, so the killed run replaces versions too.
        for i in rng.sample(range(40), 8):
            (corpus / f"doc{i:03}.txt").write_text(
                f"Round {round_} rewrote document {i}.\n" * (5 + round_ * 20)
            )
        proc = _run_ingest(corpus, index)
        with contextlib.suppress(AssertionError):  # it finished first: still a valid round
            _kill_when_writing(proc, index, delay=rng.uniform(0.0, 3.0))
        rerun = _run_ingest(corpus, index)
        _, err = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, err
        code, report = _check(index)
        assert code == 0 and report["consistent"], (round_, report)
        assert report["documents"] == 40


def test_markdown_chunks_carry_nested_heading_paths(library, tmp_path):
    docs = tmp_path / "md"
    docs.mkdir()
    (docs / "guide.md").write_text(
        "# Guide\n\nWelcome.\n\n## Install\n\nGeneral steps.\n\n### Windows\n\n"
        "Use PowerShell and winget.\n\n### Linux\n\nUse apt.\n\n## Use\n\nAsk questions.\n"
    )
    ingest(library, docs)
    got = all_chunks(library.store)
    headings = {c.heading for c in got}
    assert headings == {
        "Guide",
        "Guide > Install",
        "Guide > Install > Windows",
        "Guide > Install > Linux",
        "Guide > Use",
    }
    windows = [c.text for c in got if c.heading == "Guide > Install > Windows"]
    assert windows == ["### Windows\n\nUse PowerShell and winget."]
