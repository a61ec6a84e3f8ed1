"""The ``rag`` command as a person runs it: a real process, real index, real models."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testdocs import write_pdf


def rag(*args, index: Path, stdin: str | None = None, env: dict | None = None):
    full_env = {**os.environ, "RAG_INDEX": str(index), "RAG_COLLECTION": "test", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        input=stdin, capture_output=True, text=True, env=full_env, timeout=600,
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """The sample documents, ingested once for this module by the real command."""
    index = tmp_path_factory.mktemp("cli") / "index"
    done = rag("ingest", str(Path(__file__).parent.parent / "data"), index=index)
    assert done.returncode == 0, done.stderr
    assert "5 new" in done.stdout
    return index


def test_query_answers_a_batch_from_stdin_as_json(index):
    questions = "What is the hotel limit in London?\n\nWhen was inverter 3 replaced?\n"
    done = rag("query", "--json", "-k", "3", index=index, stdin=questions)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["question"] for a in answers] == [
        "What is the hotel limit in London?",
        "When was inverter 3 replaced?",
    ]
    london, inverter = answers
    assert len(london["hits"]) == 3
    assert set(london["hits"][0]) >= {"rank", "text", "source", "page", "score"}
    assert london["hits"][0]["source"].endswith("travel-policy.md")
    assert "260 euros" in london["hits"][0]["text"]
    assert inverter["hits"][0]["source"].endswith("harbor-street-solar-report.pdf")
    assert inverter["hits"][0]["page"] == 2
    scores = [h["score"] for h in london["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_sources_lists_documents_with_chunk_counts(index):
    done = rag("sources", "--json", index=index)
    listed = {Path(d["source"]).name: d["chunks"] for d in json.loads(done.stdout)}
    assert set(listed) == {
        "README.md", "local-rag-chat-setup.md", "travel-policy.md",
        "tea-garden.txt", "harbor-street-solar-report.pdf",
    }
    assert all(n > 0 for n in listed.values())


def test_ingest_exit_codes(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    write_pdf(docs / "ok.pdf", ["Fine text."])
    assert rag("ingest", str(docs), index=tmp_path / "i").returncode == 0

    (docs / "empty.md").write_text("")
    failed = rag("ingest", str(docs), "--json", index=tmp_path / "i")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["failed"][0]["reason"] == "empty file"

    missing = rag("ingest", str(tmp_path / "nope"), index=tmp_path / "i")
    assert missing.returncode == 2
    assert "No such file or folder" in missing.stderr and "Traceback" not in missing.stderr


def test_a_bad_model_spec_gets_one_clear_sentence(index):
    done = rag("ask", "hello", "--llm", "ollama", index=index)
    assert done.returncode == 2
    assert "Unknown model spec 'ollama'" in done.stderr
    assert "openai:MODEL@BASE_URL" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_server_says_what_to_start(index):
    done = rag("ask", "hello", "--llm", "openai:phi@http://127.0.0.1:9/v1", index=index)
    assert done.returncode == 1
    assert "not reachable" in done.stderr and "start it" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_setting_names_the_variable(index):
    done = rag("query", "x", index=index, env={"RAG_TOP_K": "lots"})
    assert done.returncode == 2
    assert "RAG_TOP_K" in done.stderr and "Traceback" not in done.stderr


def test_ask_streams_an_answer_and_lists_sources(index, embedded_model):
    done = rag("ask", "What is the daily meal allowance?", index=index)
    assert done.returncode == 0, done.stderr
    answer, _, sources = done.stdout.partition("\nSources:" if "\nSources:" in done.stdout
                                               else "\nRetrieved (not cited):")
    assert answer.strip()
    assert "travel-policy.md" in sources


def test_a_bad_collection_name_is_explained(tmp_path):
    done = rag("sources", index=tmp_path / "i", env={"RAG_COLLECTION": "x"})
    assert done.returncode == 2
    assert "cannot name a collection" in done.stderr and "Traceback" not in done.stderr
