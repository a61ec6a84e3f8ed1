"""Answers that disagree with their evidence (#26): a number or name the document gives
differently is caught, the evidence then leads, and every sentence is cited.

The model's words are fixed here (a replayed stream, or a scripted OpenAI-compatible
server for the CLI), so the checks are tested on exactly the wrong answer the issue
saw: "The hotel limit in London is 180 euros." Everything after the model runs for
real: the embedder, the index of the sample documents, the pipeline, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.answers import answering as chat
from rag.answers import checks, citations, contradictions, evidence
from rag.answers import markdown as answer_markdown
from rag.answers.grounding import Judged
from rag.config import Settings
from rag.ingest.pipeline import Ingestor, discover
from rag.library.chunks import Chunk, Hit
from rag.library.search import open_library, search
from rag.models.browser import BROWSER
from rag.models.routing import ModelPool

from support_security import ScriptedModel
from support_streams import ReplayedModel

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = ROOT / "benchmarks" / "qa" / "contradictions.jsonl"
HOTELS = (
    "The nightly hotel limit is 180 euros in most cities and 260 euros in London,\n"
    "Paris, Tokyo and New York."
)
LONDON = "What is the hotel limit in London?"
WRONG = "The hotel limit in London is 180 euros."


@pytest.fixture(scope="module")
def sample(tmp_path_factory, embedder):
    """The travel policy and the tea-garden notes of data/, ingested once."""
    index = tmp_path_factory.mktemp("sample") / "index"
    library = open_library(Settings(index=index, collection="sample"), embedder)
    Ingestor(library).run(
        discover([ROOT / "data" / "policies", ROOT / "data" / "notes"]), progress=False
    )
    return library


def find(answer: str, question: str, sentence: str = HOTELS) -> list:
    """The contradiction test alone, with ``sentence`` as the evidence."""
    judged = [Judged(0, len(answer), answer, "similarity")]
    top = [contradictions.Sentence(sentence, "/docs/travel-policy.md")]
    return contradictions.find(answer, question, judged, top, sentence)


# --- the test itself -------------------------------------------------------


def test_numbers_are_read_with_their_units():
    found = contradictions.quantities(
        "Up to 2,000 eggs a day since 1987, about 40,000 such columns, €5, eight percent."
    )
    assert [(q.value, q.unit) for q in found] == [
        (2000, "egg"),
        (1987, "year"),
        (40000, "column"),
        (5, "euro"),
        (8, "%"),
    ]


def test_the_london_limit_given_as_180_euros_is_contradicted_with_the_documents_words():
    [wrong] = find(WRONG, LONDON)
    assert wrong.says.startswith("260 euros in London")
    assert "180 euros" not in wrong.says
    assert wrong.evidence == " ".join(HOTELS.split())
    assert "your document says “260 euros in London" in wrong.note()


@pytest.mark.parametrize(
    "answer",
    [
        "The hotel limit in London is 260 euros.",
        "Hotels may cost 180 euros in most cities and 260 euros in London.",
        # What the tiny model once wrote: muddled, but it gives the document's figure.
        "The hotel limit in London is 180 euros in most cities and 260 euros in London.",
        "The limit is higher in London than elsewhere.",
    ],
)
def test_what_the_evidence_says_passes(answer):
    assert find(answer, LONDON) == []


def test_the_number_meant_is_the_one_next_to_what_is_asked():
    # The same sentence, asked about most cities: now 260 is the wrong one.
    assert find("In most cities the limit is 180 euros.", "What is the limit in most cities?") == []
    [wrong] = find("In most cities the limit is 260 euros.", "What is the limit in most cities?")
    assert wrong.says.startswith("180 euros in most cities")


def test_a_name_the_passages_never_mention_contradicts_a_who_answer():
    sentence = "The Austrian scientist Karl von Frisch decoded the waggle dance."
    [wrong] = find("Charles Darwin decoded the dance.", "who decoded the waggle dance", sentence)
    assert "Karl von Frisch" in wrong.says
    assert find("Karl von Frisch decoded it.", "who decoded the waggle dance", sentence) == []


# --- calibrated on the claims set ------------------------------------------


def test_every_contradicting_claim_about_the_sample_documents_is_caught_and_no_true_one(
    sample,
):
    rows = [json.loads(line) for line in CLAIMS.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["documents"] == "data"]
    assert {r["kind"] for r in rows} >= {"true", "contradicting", "false"}
    missed, false_alarms = [], []
    for row in rows:
        hits = search(sample, row["question"], 5)
        found = evidence.best(row["question"], hits, sample.embedder, 2)
        result = checks.checked(row["claim"], row["question"], hits, found, sample.embedder, 0.95)
        if row["kind"] == "contradicting" and not result.contradicted:
            missed.append(row["claim"])
        if row["kind"] != "contradicting" and result.contradicted:
            false_alarms.append(row["claim"])
    assert missed == [] and false_alarms == []


# --- in the pipeline: the evidence leads, every sentence is cited ----------


def answer(library, text: str, settings: Settings, question: str = LONDON) -> chat.Turn:
    """``question`` answered from ``library`` by a model that writes ``text``."""
    model = ReplayedModel([text])
    pool = ModelPool(settings, loaded={"embedded": model})

    async def run() -> chat.Turn:
        turn = await chat.prepare(question, library, settings)
        async for _ in chat.stream_answer(turn, pool, settings):
            pass
        return turn

    return asyncio.run(run())


def test_a_contradicted_answer_is_led_by_the_evidence_quoted_from_the_document(sample):
    turn = answer(sample, WRONG, sample.settings)
    assert [c.text for c in turn.contradicted] == [WRONG]
    assert turn.lead_with_evidence
    shown = answer_markdown.finished(turn)
    quote, rest = shown.split(answer_markdown.MODEL_HEADING, 1)
    assert quote.startswith(answer_markdown.QUOTE_HEADING)
    assert "260 euros in London" in quote  # the document's sentence comes first
    assert WRONG in rest and "contradicted: your document says “260 euros in London" in rest
    assert WRONG[:-1] + " [" not in rest  # a contradicted sentence is cited by no passage


def test_a_right_answer_without_citations_gets_the_passage_that_supports_it(sample):
    checked = sample.settings.with_overrides(evidence_first="checked")
    turn = answer(sample, "The daily meal allowance is 55 euros.", checked, "meal allowance?")
    assert not turn.contradicted and not turn.unsupported and not turn.lead_with_evidence
    [citation] = turn.citations
    assert citation.attributed
    n = citation.numbers[0]
    assert "55 euros" in turn.context[n - 1].chunk.text
    assert turn.cited_text() == f"The daily meal allowance is 55 euros [{n}]."
    assert turn.shown_sources()[0] is True and turn.sources()[0][0] == n
    assert f"[{n}]" in answer_markdown.finished(turn)


def test_the_evidence_leads_the_tiny_models_answers_and_checked_ones_of_others():
    fine = checks.Checked(claims=[(0, 10)])
    auto = Settings()
    assert auto.evidence_first == "auto"
    assert checks.leads(fine, True, auto, "embedded")
    assert not checks.leads(fine, True, auto, "openai:m@http://127.0.0.1:1/v1")
    assert checks.leads(checks.Checked(), True, auto, "openai:m@http://127.0.0.1:1/v1")
    assert not checks.leads(fine, False, auto, "embedded")  # nothing to quote


def test_the_evidence_leads_the_browsers_answers_when_it_runs_the_tiny_model(tmp_path):
    fine = checks.Checked(claims=[(0, 10)])
    # The browser's default model is the embedded model's own weights (#23).
    assert checks.leads(fine, True, Settings(), BROWSER)
    # Another model in the browser (RAG_BROWSER_MODEL) is checked like any other.
    assert not checks.leads(fine, True, Settings(browser_model=tmp_path), BROWSER)
    assert checks.leads(checks.Checked(), True, Settings(browser_model=tmp_path), BROWSER)


def test_the_evidence_leads_every_answer_or_none_as_set(sample):
    right = "The hotel limit in London is 260 euros."
    always = sample.settings.with_overrides(evidence_first="always")
    assert answer(sample, right, always).lead_with_evidence
    never = sample.settings.with_overrides(evidence_first="never")
    turn = answer(sample, WRONG, never)
    assert turn.contradicted and not turn.lead_with_evidence
    assert not answer_markdown.finished(turn).startswith(answer_markdown.QUOTE_HEADING)


# --- the terminal ----------------------------------------------------------


@pytest.fixture
def scripted_server(processes):
    """An OpenAI-compatible server that always answers WRONG: the model boundary,
    scripted so the CLI is tested on the issue's own wrong answer."""
    server = ScriptedModel([WRONG])
    yield server.base
    server.shutdown()


def test_ask_json_says_the_answer_is_contradicted(sample, scripted_server):
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", "--json", LONDON],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            "RAG_INDEX": str(sample.settings.index),
            "RAG_COLLECTION": sample.settings.collection,
            "RAG_LLM": f"openai:m@{scripted_server}",
            "RAG_LLM_FALLBACK": "[]",
        },
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model_answer"] == WRONG
    [wrong] = out["contradicted"]
    assert wrong["text"] == WRONG and wrong["says"].startswith("260 euros in London")
    assert out["leads_with"] == "evidence"
    assert "260 euros in London" in out["evidence"][0]["text"]


def test_every_door_shows_the_same_citations(sample):
    from rag.cli.ask import _turn_json
    from rag.conversations import records, transcript
    from rag.web.openai_api.answers import rag_field

    turn = answer(
        sample, "The daily meal allowance is 55 euros.", sample.settings, "meal allowance?"
    )
    cited = turn.cited_text()
    [n] = turn.citations[0].numbers
    assert f"[{n}]" in cited
    app_text, passages = transcript.finished(turn)
    assert f"[{n}]" in app_text and passages[0][0].startswith(f"[{n}] ")
    # The cited passage's panel shows the evidence sentence it holds in bold.
    top = turn.evidence[0]
    assert top.chunk_id == turn.context[n - 1].chunk.id
    assert f"**{top.text}**" in passages[0][1]
    cli = _turn_json(turn)
    assert cli["answer"] == cited and cli["citations"][0]["passages"] == [n]
    api = rag_field(turn, "sample")
    assert api["answer"] == cited and [s["number"] for s in api["sources"] if s["cited"]] == [n]
    stored = records.metadata(turn)
    assert stored["answer"] == cited and stored["sources"][0]["n"] == n
    entries = [
        records.Entry("user", turn.question),
        records.Entry("assistant", stored["answer"], sources=stored["sources"]),
    ]
    exported = transcript.export_markdown({"id": "c"}, entries)
    assert cited in exported and f"- [{n}] " in exported


def test_an_answer_with_nothing_usable_is_led_by_the_evidence(sample):
    turn = answer(sample, "I am not sure.", sample.settings, "What is the daily meal allowance?")
    assert turn.lead_with_evidence and not turn.contradicted
    shown = answer_markdown.finished(turn)
    assert shown.startswith(answer_markdown.QUOTE_HEADING)
    assert "55 euros" in shown.split(answer_markdown.MODEL_HEADING)[0]
    assert answer_markdown.WHY_LED["unusable"] in shown


def test_a_sentence_that_passed_the_support_check_is_cited_even_below_the_threshold_per_passage():
    """Words found across two passages can carry a sentence over the support threshold
    while neither passage alone reaches it: it still cites the one supporting it best,
    so that every sentence is either cited or marked (#26)."""
    hits = [
        Hit(Chunk(id=c, text=f"passage {c}", source=f"/d/{c}.md", index=0), 1.0, n)
        for n, c in enumerate(("a", "b"), start=1)
    ]
    answer = "The reef is old. It grows slowly."
    judged = [
        Judged(0, 16, "The reef is old.", "similarity", 0.7, {"a": 0.3, "b": 0.4}),
        Judged(17, 33, "It grows slowly.", "similarity", 0.2, {"a": 0.1, "b": 0.1}),
    ]
    found = citations.attribute(answer, judged, hits, marked={17})
    assert [(c.start, c.numbers, c.attributed) for c in found] == [(0, (2,), True)]
