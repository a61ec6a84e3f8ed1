"""Answers a reader can check: evidence sentences, loops stopped, unsupported
sentences marked, whole-document summaries. Real embedder, real index on disk,
the real embedded model at temperature 0."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.answers import (
    answering as chat,
)
from rag.answers import (
    checks as answer_checks,
)
from rag.answers import (
    evidence,
    grounding,
    prompts,
    summaries,
)
from rag.answers import (
    markdown as answer_markdown,
)
from rag.answers.repetition import NOTICE, LoopGuard
from rag.config import Settings
from rag.conversations import uploads
from rag.ingest.pipeline import Ingestor, discover
from rag.library.chunks import Chunk, Hit
from rag.library.search import open_library, search
from rag.models.routing import ModelPool

from support_streams import ReplayedModel
from support_streams import load as load_recording

ARTICLES = Path(__file__).resolve().parents[2] / "benchmarks" / "encyclopedia"


@pytest.fixture(scope="module")
def articles(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("encyclopedia") / "articles"
    folder.mkdir()
    for article in ARTICLES.glob("*.md"):  # the benchmark's eleven articles
        shutil.copy(article, folder / article.name)
    return folder


@pytest.fixture(scope="module")
def encyclopedia(articles, embedder):
    """The articles ingested once for the module: every test here only reads them."""
    library = open_library(Settings(index=articles.parent / "index", collection="test"), embedder)
    Ingestor(library).run(discover([articles]), progress=False)
    return library


@pytest.fixture
def pool(settings, embedded_model):
    return ModelPool(settings, loaded={"embedded": embedded_model})


# --- loops -----------------------------------------------------------------


def feed_in_pieces(text: str, size: int = 3) -> LoopGuard:
    guard = LoopGuard()
    for i in range(0, len(text), size):
        if guard.feed(text[i : i + size]):
            break
    return guard


def test_a_phrase_repeated_back_to_back_is_cut_after_its_first_time():
    guard = feed_in_pieces(
        "It was ruled by the House of the House of the House of the House of "
        "the House of the House of"
    )
    assert guard.looped
    assert guard.kept == "It was ruled by the House of"


def test_a_repeated_sentence_is_cut_at_the_end_of_its_first_time():
    sentence = "The length of the run encodes the distance to the food. "
    guard = feed_in_pieces("The dance tells direction. " + sentence * 4)
    assert guard.looped
    assert guard.kept == "The dance tells direction. " + sentence.strip()


def test_an_answer_that_does_not_repeat_is_left_alone():
    text = (
        "The queen may lay up to 2,000 eggs a day in early summer [1]. Workers are sterile "
        "females that build comb, nurse larvae and forage [1]. Drones are males [2]."
    )
    guard = feed_in_pieces(text + " ")
    assert not guard.looped


def passage(text: str, chunk_id: str = "bees", private: bool = False) -> Hit:
    extra: dict = {"private": True} if private else {}
    chunk = Chunk(id=chunk_id, text=text, source=f"/docs/{chunk_id}.md", index=0, extra=extra)
    return Hit(chunk, score=1.0, rank=1, similarity=0.8)


def answer_with(model: ReplayedModel, settings, turn: chat.Turn) -> str:
    """The pipeline's answer with ``model`` as the only model; returns what was streamed."""
    pool = ModelPool(settings, loaded={"embedded": model})

    async def read() -> str:
        return "".join([d async for d in chat.stream_answer(turn, pool, settings)])

    return asyncio.run(read())


def as_recorded(settings, recording: dict, **changes):
    """The settings the recording was made with, and ``changes``."""
    return settings.with_overrides(**{**recording["settings"], **changes})


WAGGLE = passage("The length of the straight run tells the distance to the food.")


def test_a_recorded_looping_answer_is_cut_marked_and_its_model_stopped(settings):
    # What the embedded model wrote at temperature 0 without a repetition penalty or
    # the evidence note: the same sentence until the token limit. Whether it loops is
    # a matter of the CPU's floating-point path, so the test replays the recording.
    recording = load_recording("looping-waggle-dance")
    raw = "".join(recording["deltas"])
    assert feed_in_pieces(raw).looped, "the recording must hold a loop"
    model = ReplayedModel(recording["deltas"])
    turn = chat.Turn(recording["question"], [WAGGLE])

    shown = answer_with(model, as_recorded(settings, recording, stop_loops=True), turn)

    assert turn.looped and NOTICE in turn.notices()
    assert turn.text and raw.startswith(turn.text) and len(turn.text) < len(raw) / 2
    assert turn.text.endswith(".")  # cut at a sentence end
    assert not feed_in_pieces(turn.text + " ").looped  # what is kept repeats nothing
    assert shown.startswith(turn.text)  # the reader saw the kept answer, then was told to cut
    assert model.closed_early and model.sent < len(recording["deltas"]) / 2  # the model stopped


def test_a_recorded_answer_that_ends_on_its_own_passes_unchanged(settings):
    recording = load_recording("ends-meal-allowance")
    raw = "".join(recording["deltas"])
    model = ReplayedModel(recording["deltas"])
    turn = chat.Turn(recording["question"], [passage("Meals: 55 euros a day.", "meals")])

    shown = answer_with(model, as_recorded(settings, recording, stop_loops=True), turn)

    assert shown == turn.text == raw and raw.strip()
    assert not turn.looped and NOTICE not in turn.notices()
    assert model.sent == len(recording["deltas"]) and not model.closed_early


def test_without_the_guard_a_looping_answer_runs_to_its_end(settings):
    recording = load_recording("looping-waggle-dance")
    model = ReplayedModel(recording["deltas"])
    turn = chat.Turn(recording["question"], [WAGGLE])
    shown = answer_with(model, as_recorded(settings, recording, stop_loops=False), turn)
    assert shown == turn.text == "".join(recording["deltas"])
    assert not turn.looped and not model.closed_early


# --- evidence --------------------------------------------------------------


def test_sentences_keep_abbreviations_and_their_offsets():
    text = "Printing began c. 1450 in Mainz. It spread (see Fig. 2) to Venice.\n## Next"
    spans = evidence.sentence_spans(text)
    assert [text[a:b] for a, b in spans] == [
        "Printing began c. 1450 in Mainz.",
        "It spread (see Fig. 2) to Venice.",
        "## Next",
    ]


def test_the_evidence_sentence_holds_the_fact_asked(encyclopedia, articles):
    # Found with the passages, before any model writes (its score leads the next by 0.4).
    turn = asyncio.run(
        chat.prepare(
            "how many eggs does a queen bee lay a day?", encyclopedia, encyclopedia.settings
        )
    )
    top = turn.evidence[0]
    assert "2,000 eggs a day" in top.text
    assert top.source == str(articles / "honey-bee.md")
    assert top.heading == "Honey bee > Colony life"
    # The offsets are in the same text as the chunk's own span.
    hit = next(h for h in turn.hits if h.chunk.id == top.chunk_id)
    assert hit.chunk.text[top.start - hit.chunk.start : top.end - hit.chunk.start] == top.text
    assert set(top.as_dict()) == {"text", "source", "page", "heading", "start", "end"}
    shown = answer_markdown.highlighted_passage(top, turn.hits)
    assert f"**{top.text}**" in shown


def test_a_sentence_that_refers_back_is_scored_with_the_one_before():
    from rag.library.chunks import Chunk, Hit

    text = (
        "The Great Barrier Reef is the largest reef system. It was listed in 1981. "
        "Many fish live there."
    )
    hit = Hit(Chunk(id="c", text=text, source="/d/reef.md", index=0, start=100), 1.0, 1)
    found = evidence.candidates([hit])
    assert [c.before for c in found] == [
        "",
        "The Great Barrier Reef is the largest reef system.",
        "",
    ]
    assert found[1].scored_text.endswith("It was listed in 1981.")


# The evidence note: what the model is told about the evidence sentence. Checked on
# the prompt the model receives, which is the same on every CPU.

MEALS = passage(
    "Travel policy.\nMeals are paid at\n55 euros a day. Hotels up to 260 euros.", "meals"
)
DIARY = passage("My garden gate code is HEDGEHOG-4471.", "diary", private=True)


def sentence_of(hit: Hit, text: str) -> evidence.Evidence:
    start = hit.chunk.text.index(text)
    return evidence.Evidence(
        text, hit.chunk.source, None, "", start, start + len(text), 1.0, chunk_id=hit.chunk.id
    )


def prompt_of(settings, hits: list[Hit], top: evidence.Evidence, **model) -> str:
    """The question's message as the model receives it, with ``top`` as the evidence."""
    replayed = ReplayedModel(["Fine."], **model)
    turn = chat.Turn("What is paid for meals?", hits)
    turn.evidence = [top]
    answer_with(replayed, settings, turn)
    return replayed.requests[-1]["messages"][-1]["content"]


def test_the_evidence_note_quotes_the_top_sentence_after_the_passages(settings):
    top = sentence_of(MEALS, "Meals are paid at\n55 euros a day.")
    sent = prompt_of(settings, [MEALS], top)
    note = answer_checks.EVIDENCE_NOTE.format(sentence="Meals are paid at 55 euros a day.")
    assert sent.endswith(note) and sent.index("[1] Travel policy.") < sent.index(note)
    off = prompt_of(settings.with_overrides(evidence_in_prompt=False), [MEALS], top)
    assert "The passages say" not in off and "[1] Travel policy." in off


def test_the_evidence_note_never_quotes_a_passage_the_model_may_not_see(settings):
    # A model off this machine gets no private passage, so no private evidence either.
    secret = sentence_of(DIARY, "My garden gate code is HEDGEHOG-4471.")
    remote = {"local": False, "name": "remote"}
    assert "HEDGEHOG" not in prompt_of(settings, [MEALS, DIARY], secret, **remote)
    assert "The passages say" in prompt_of(settings, [MEALS, DIARY], secret)  # local: it may
    public = sentence_of(MEALS, "Hotels up to 260 euros.")
    assert 'The passages say: "Hotels' in prompt_of(settings, [MEALS, DIARY], public, **remote)


def test_the_evidence_note_is_left_out_when_it_does_not_fit(settings):
    top = sentence_of(MEALS, "Hotels up to 260 euros.")
    plain = prompts.build_messages("What is paid for meals?", [MEALS])
    words = prompts.prompt_size(plain, lambda text: len(text.split()))
    exact = {"context_window": words + settings.max_answer_tokens}  # the passages just fit
    sent = prompt_of(settings, [MEALS], top, **exact)
    assert "[1] Travel policy." in sent and "The passages say" not in sent
    roomy = {"context_window": words + settings.max_answer_tokens + 40}
    assert "The passages say" in prompt_of(settings, [MEALS], top, **roomy)


# --- unsupported sentences -------------------------------------------------


def test_an_answer_sentence_that_contradicts_the_passages_is_marked(encyclopedia, settings):
    hits = search(encyclopedia, "how many eggs does a queen bee lay", 4)
    answer = (
        "The queen may lay up to 2,000 eggs a day in early summer [1]. "
        "The queen lays up to 200 eggs a day [1]. "
        "The waggle dance was decoded by Charles Darwin on the voyage of the Beagle."
    )
    marked = grounding.unsupported(answer, hits, encyclopedia.embedder, settings.unsupported_below)
    texts = [m.text for m in marked]
    assert "The queen lays up to 200 eggs a day [1]." in texts
    assert any("Charles Darwin" in t for t in texts)
    assert not any("2,000" in t for t in texts)
    shown = answer_markdown.mark_unsupported(answer, marked)
    assert shown.count(answer_markdown.UNSUPPORTED_MARK) == len(marked)


# --- whole documents -------------------------------------------------------


def test_summary_requests_are_recognised(encyclopedia):
    assert summaries.requested("Summarize this file")
    assert summaries.requested("what are the main points of report.pdf?")
    assert not summaries.requested("how many eggs does a queen lay?")
    found = summaries.find("what are the main points of glacier.md?", [encyclopedia])
    assert found is not None and found.name == "glacier.md"
    assert summaries.find("what are the main points of nothing.pdf?", [encyclopedia]) is None
    assert summaries.find("how many eggs does a queen lay?", [encyclopedia]) is None


def test_a_summary_request_on_an_uploaded_file_uses_all_its_chunks(
    encyclopedia, embedder, pool, settings
):
    chat_uploads = uploads.create(settings, embedder)
    try:
        message = uploads.add(chat_uploads, str(ARTICLES / "silk-road.md"), "silk-road.md")
        assert "Added" in message
        stored = summaries.document_chunks(
            chat_uploads.library, str(chat_uploads.folder / "files" / "silk-road.md")
        )
        assert len(stored) >= 3
        # A small answer budget forces several parts: the map step runs, then the reduce.
        options = settings.with_overrides(temperature=0.0, max_answer_tokens=7800)
        steps: list[tuple[int, int]] = []
        turn = asyncio.run(
            chat.prepare("Summarize this file", [encyclopedia, chat_uploads.library], options)
        )
        assert turn.summary is not None and turn.summary.name == "silk-road.md"
        turn.progress = lambda done, total: steps.append((done, total))

        async def answer() -> str:
            return "".join([d async for d in chat.stream_answer(turn, pool, options)])

        text = asyncio.run(answer())
        assert turn.summarised == len(stored)
        assert text.strip()
        assert steps[-1][0] == steps[-1][1] and steps[-1][1] >= 3  # parts, then the whole
        budget = pool.load("embedded").context_window - options.max_answer_tokens
        parts = summaries.pack(
            [c.text for c in stored],
            summaries.MAP_PROMPT,
            "silk-road.md",
            pool.load("embedded"),
            budget,
        )
        assert "\n\n".join(parts).count("Zhang Qian") >= 1 and len(parts) >= 2
    finally:
        uploads.discard(chat_uploads)


# --- the terminal ----------------------------------------------------------


def test_ask_json_returns_answer_evidence_sources_and_stats(encyclopedia, processes):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "ask",
            "--json",
            "--index",
            str(encyclopedia.settings.index),
            "--collection",
            encyclopedia.settings.collection,
            "who decoded the waggle dance",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "RAG_TEMPERATURE": "0"},
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"answer", "evidence", "sources", "stats"}
    assert "Karl von Frisch" in out["evidence"][0]["text"]
    assert set(out["evidence"][0]) == {"text", "source", "page", "heading", "start", "end"}
    assert out["stats"]["answer_tokens"] > 0


# --- repetition penalty on the wire ----------------------------------------


@pytest.fixture
def recording_server(processes):
    """A stand-in OpenAI-compatible server that records each request body and streams
    one word: what a server receives is the point, and no server here would show it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Paris"}, "finish_reason": None}],
            }
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    server.shutdown()


@pytest.mark.parametrize("local", [True, False])
def test_the_repetition_penalty_reaches_a_server_in_the_form_it_takes(recording_server, local):
    from rag.models.openai_compat import OpenAICompatibleChat

    base, bodies = recording_server
    model = OpenAICompatibleChat("m", base, local_hosts=["127.0.0.1"] if local else [])

    async def run():
        return [
            d
            async for d in model.stream(
                [{"role": "user", "content": "hi"}],
                max_tokens=4,
                temperature=0,
                repetition_penalty=1.1,
            )
        ]

    assert asyncio.run(run()) == ["Paris"]
    if local:  # llama.cpp / LM Studio and vLLM names
        assert bodies[-1]["repeat_penalty"] == 1.1 and bodies[-1]["repetition_penalty"] == 1.1
    else:  # a cloud API rejects unknown fields: OpenAI's own
        assert bodies[-1]["frequency_penalty"] == pytest.approx(0.2)
        assert "repeat_penalty" not in bodies[-1]


@pytest.mark.parametrize("local", [True, False])
def test_the_default_of_no_penalty_is_said_to_a_local_server(recording_server, local, settings):
    """llama-cpp-python's server applies 1.1 to a request that names no penalty, which
    costs a small model most of its right answers: "none" has to be sent."""
    from rag.answers.checks import decoding
    from rag.models.openai_compat import OpenAICompatibleChat

    base, bodies = recording_server
    model = OpenAICompatibleChat("m", base, local_hosts=["127.0.0.1"] if local else [])
    assert settings.repetition_penalty == 1.0

    async def run():
        message = [{"role": "user", "content": "hi"}]
        return [
            d
            async for d in model.stream(message, max_tokens=4, temperature=0, **decoding(settings))
        ]

    assert asyncio.run(run()) == ["Paris"]
    if local:
        assert bodies[-1]["repeat_penalty"] == 1.0
    else:  # OpenAI's own default: nothing to send
        assert "frequency_penalty" not in bodies[-1]
