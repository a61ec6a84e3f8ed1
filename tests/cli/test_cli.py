"""The ``rag`` command as a person runs it: a real process, real index, real models."""

import json
import re
from pathlib import Path

import pytest

from servers import printed_sources, rag
from testdocs import write_pdf

pytestmark = pytest.mark.integration  # every test runs the `rag` command as a process


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """The sample documents, ingested once for this module by the real command."""
    index = tmp_path_factory.mktemp("cli") / "index"
    done = rag("ingest", str(Path(__file__).resolve().parents[2] / "data"), index=index)
    assert done.returncode == 0, done.stderr
    assert "4 new" in done.stdout
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
        "local-rag-chat-setup.md",
        "travel-policy.md",
        "tea-garden.txt",
        "harbor-street-solar-report.pdf",
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
    done = rag(
        "ask",
        "What is the daily meal allowance?",
        "--llm",
        "openai:phi@http://127.0.0.1:9/v1",
        index=index,
    )
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
    answer, _ = printed_sources(done.stdout)
    text, _, evidence = answer.partition("\nEvidence:\n")
    assert text.strip()
    assert "travel-policy.md, Northwind Labs travel policy > Expenses > Meals" in evidence


def test_a_bad_collection_name_is_explained(tmp_path):
    done = rag("sources", index=tmp_path / "i", env={"RAG_COLLECTION": "x"})
    assert done.returncode == 2
    assert "cannot name a collection" in done.stderr and "Traceback" not in done.stderr


def test_compare_times_each_model_on_the_same_context(index, embedded_model):
    refused = "openai:phi@http://127.0.0.1:9/v1"
    done = rag(
        "compare",
        "--llm",
        "embedded",
        "--llm",
        refused,
        "What is the daily meal allowance?",
        index=index,
    )
    assert done.returncode == 1  # one model failed, and that is said
    header, *rows = done.stdout.splitlines()
    assert "first token" in header and "tokens/s" in header
    assert rows[0].startswith("SmolLM2-135M-Instruct (embedded)")
    assert re.search(r"\d+\.\d\ds +\d+\.\d +\d+ +\d+", rows[0])
    assert any("failed" in row and "not reachable" in row for row in rows[1:])


def test_models_reports_reachability_and_windows(index):
    # Only loopback traffic here: 127.0.0.1 counts as remote once it is not trusted.
    done = rag(
        "models",
        index=index,
        env={
            "RAG_LLM_FALLBACK": "openai:phi@http://localhost:9/v1,openai:big@http://127.0.0.1:9/v1",
            "RAG_LLM_LOCAL_HOSTS": "localhost",
        },
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "primary    embedded" and "context window 8192 tokens" in lines[1]
    assert "NOT REACHABLE at http://localhost:9/v1" in lines[3] and lines[3].endswith(", local")
    assert lines[5].endswith("REMOTE (no private text)")


def test_model_download_offline_says_what_to_do(tmp_path):
    done = rag(
        "model",
        "download",
        "phi-4-mini",
        index=tmp_path / "i",
        env={"RAG_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 1
    assert "needs the internet" in done.stderr and "RAG_LLM=onnx:PATH" in done.stderr
    assert "Traceback" not in done.stderr


SAMPLE_QA = Path(__file__).resolve().parents[2] / "benchmarks" / "qa" / "sample.jsonl"


def test_query_can_be_restricted_to_sources(index):
    done = rag("query", "--json", "-k", "5", "--source", "*.pdf", "hotel limit solar", index=index)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)["hits"]
    assert hits and all(h["source"].endswith("harbor-street-solar-report.pdf") for h in hits)
    assert all(-1 <= h["similarity"] <= 1 for h in hits)
    both = rag(
        "query",
        "--json",
        "--source",
        "policies",
        "--source",
        "notes/tea-garden.txt",
        "hotel tea",
        index=index,
    )
    names = {Path(h["source"]).name for h in json.loads(both.stdout)["hits"]}
    assert names == {"travel-policy.md", "tea-garden.txt"}


def test_eval_compares_variants_and_lists_failures(index, tmp_path):
    done = rag(
        "eval",
        str(SAMPLE_QA),
        "--json",
        "--variant",
        "search_mode=vector",
        "--variant",
        "search_mode=lexical,candidates=5",
        index=index,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["questions"] >= 25
    names = [v["name"] for v in report["variants"]]
    assert names == ["default", "search_mode=vector", "search_mode=lexical,candidates=5"]
    default = report["variants"][0]["metrics"]
    assert set(default) == {"hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "neighbours@5"}
    assert default["hit@5"] >= 0.96

    unanswerable = tmp_path / "qa.jsonl"
    unanswerable.write_text(
        '{"question": "What colour is the hotel?", "answers": ["mauve"]}\n'
        '{"question": "Daily meal allowance?", "answers": ["55 euros"]}\n'
    )
    text = rag("eval", str(unanswerable), index=index)
    assert text.returncode == 0, text.stderr
    assert re.search(r"^default +0\.500 +0\.500 +0\.500 +0\.500 +0\.500", text.stdout, re.M)
    assert "1 question(s) without a hit in the top 5" in text.stdout
    assert "What colour is the hotel?" in text.stdout and "Daily meal" not in text.stdout


def test_eval_refuses_bad_input_in_one_sentence(index, tmp_path):
    typo = rag("eval", str(SAMPLE_QA), "--variant", "serch_mode=vector", index=index)
    assert typo.returncode == 2 and "serch_mode" in typo.stderr
    bad_value = rag("eval", str(SAMPLE_QA), "--variant", "search_mode=psychic", index=index)
    assert bad_value.returncode == 2 and "Traceback" not in bad_value.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n")
    done = rag("eval", str(broken), index=index)
    assert done.returncode == 2 and "broken.jsonl:1" in done.stderr


# Everything a terminal would act on: C0 controls but newline and tab, DEL, C1 controls.
TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_escape_sequences_in_names_and_documents_never_reach_the_terminal(tmp_path):
    # Set the window title, write the clipboard (OSC 52), clear the screen, and CSI in
    # its one-character C1 form: in a file name and in the text of the document.
    evil = "\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b31m"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / f"budget{evil}.md").write_text(
        f"# Harbour {evil}lights\n\nThe budget for the harbour lights is 4200 euros.{evil}\n"
    )
    (docs / f"broken{evil}.pdf").write_bytes(b"not a pdf")  # its failure names it
    index = tmp_path / "index"
    ingested = rag("ingest", str(docs), index=index)
    listed = rag("sources", index=index)
    found = rag("query", "What is the budget for the harbour lights?", index=index)
    assert ingested.returncode == 1 and "broken" in ingested.stdout  # the PDF failed
    assert "budget" in listed.stdout and "4200 euros" in found.stdout
    for done in (ingested, listed, found):
        assert not TERMINAL_CONTROLS.search(done.stdout + done.stderr), done
