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

from ingest.pipeline import Ingestor, discover
from rag import answer_markdown, chat, evidence, grounding, summaries, uploads
from rag.repetition import NOTICE, LoopGuard
from rag.retrieval import search
from rag.routing import ModelPool

ARTICLES = Path(__file__).resolve().parents[2] / "benchmarks" / "encyclopedia"


@pytest.fixture
def articles(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    for article in ARTICLES.glob("*.md"):  # the benchmark's eleven articles
        shutil.copy(article, folder / article.name)
    return folder


@pytest.fixture
def encyclopedia(library, articles):
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


def test_a_prompt_that_made_the_embedded_model_loop_now_ends_marked(encyclopedia, pool, settings):
    # At temperature 0 without a repetition penalty this question made SmolLM2-135M
    # write "The distance traveled is encoded in the dance, which is encoded in the
    # dance. ..." until the token limit (found with benchmarks.answers --baseline).
    options = settings.with_overrides(
        temperature=0.0, repetition_penalty=1.0, evidence_in_prompt=False
    )
    question = "What does the duration of the straight run in the waggle dance indicate?"
    turn = asyncio.run(chat.ask(question, encyclopedia, pool, options))
    assert turn.looped, turn.text
    assert NOTICE in turn.notices()
    assert not feed_in_pieces(turn.text + " ").looped  # what is kept repeats nothing
    assert turn.stats.answer_tokens < options.max_answer_tokens


# --- evidence --------------------------------------------------------------


def test_sentences_keep_abbreviations_and_their_offsets():
    text = "Printing began c. 1450 in Mainz. It spread (see Fig. 2) to Venice.\n## Next"
    spans = evidence.sentence_spans(text)
    assert [text[a:b] for a, b in spans] == [
        "Printing began c. 1450 in Mainz.",
        "It spread (see Fig. 2) to Venice.",
        "## Next",
    ]


def test_the_evidence_sentence_holds_the_fact_asked(encyclopedia, pool, settings, articles):
    options = settings.with_overrides(temperature=0.0)
    turn = asyncio.run(
        chat.ask("how many eggs does a queen bee lay a day?", encyclopedia, pool, options)
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
    from rag.chunks import Chunk, Hit

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


def test_ask_json_returns_answer_evidence_sources_and_stats(encyclopedia, settings, processes):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "ask",
            "--json",
            "--index",
            str(settings.index),
            "--collection",
            settings.collection,
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
    from rag.answer_checks import decoding
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
