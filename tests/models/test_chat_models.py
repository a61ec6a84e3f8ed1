"""One contract every chat backend meets, run against each real backend.

Backends here: the embedded model (ONNX Runtime GenAI in-process), Foundry
Local's SDK in-process with the same model folder registered, and an
OpenAI-compatible server in a separate process (``rag serve``, over real HTTP).
All use the real tiny model; nothing is faked.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rag.answers import answering as chat
from rag.config import Settings
from rag.models.openai_compat import OpenAICompatibleChat
from rag.models.routing import ModelPool

from servers import SAMPLE_DATA, start_rag_server

SHORT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]


@pytest.fixture(scope="session")
def served_model(embedded_model, tmp_path_factory, processes):
    """The embedded model behind ``rag serve``, reached with the OpenAI client."""
    index = tmp_path_factory.mktemp("served") / "index"
    proc, base = start_rag_server({"RAG_INDEX": str(index)})
    ids = [m["id"] for m in httpx.get(f"{base}/models").json()["data"]]
    yield OpenAICompatibleChat(
        next(i for i in ids if i != "local-rag-chat"), base, context_window=8192
    )
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session", params=["embedded", "foundry", "openai"])
def chat_model(request, embedded_model, tmp_path_factory):
    if request.param == "embedded":
        return embedded_model
    if request.param == "openai":
        return request.getfixturevalue("served_model")
    from rag.models.embedded import prepare_embedded_model
    from rag.models.spec import load_chat_model

    settings = Settings(cache_dir=tmp_path_factory.mktemp("foundry-cache"))
    folder = prepare_embedded_model(Settings().cache_dir)
    return load_chat_model(f"foundry:{folder}", settings)


async def collect(stream) -> list[str]:
    return [delta async for delta in stream]


# What the tiny model answers depends on the CPU's floating-point path, so no test here
# checks its words: a backend is held to its own first answer (temperature 0 gives the
# same answer again on the same machine), whatever the words are.
_first_answers: dict[tuple[int, str], str] = {}


async def first_answer(chat_model, messages=SHORT, max_tokens: int = 32) -> str:
    """The backend's answer to ``messages`` the first time it was asked (at the start of
    the first test that needs it, before anything was stopped or run at once)."""
    key = (id(chat_model), f"{messages[0]['content']}:{max_tokens}")
    if key not in _first_answers:
        deltas = await collect(chat_model.stream(messages, max_tokens=max_tokens, temperature=0))
        _first_answers[key] = "".join(deltas)
    return _first_answers[key]


async def test_streams_an_answer_in_pieces(chat_model):
    deltas = await collect(chat_model.stream(SHORT, max_tokens=48, temperature=0))
    text = "".join(deltas)
    assert len(deltas) > 1 and text.strip()
    assert "<|im_end|>" not in text and "<|im_start|>" not in text
    # The question reaches the model: another question starts another answer.
    other = "".join(await collect(chat_model.stream(LONG, max_tokens=12, temperature=0)))
    assert other.strip() and not text.startswith(other) and not other.startswith(text[:10])


async def test_max_tokens_bounds_the_answer(chat_model):
    text = "".join(await collect(chat_model.stream(LONG, max_tokens=12, temperature=0)))
    assert 0 < chat_model.count_tokens(text) <= 16


async def test_cancelling_mid_answer_frees_the_model(chat_model):
    expected = await first_answer(chat_model)
    received: list[str] = []
    three = asyncio.Event()

    async def read() -> None:
        async for delta in chat_model.stream(LONG, max_tokens=400, temperature=0):
            received.append(delta)
            if len(received) >= 3:
                three.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(three.wait(), timeout=120)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped_at = len(received)

    answer = "".join(await collect(chat_model.stream(SHORT, max_tokens=32, temperature=0)))
    assert answer == expected  # the next answer is whole and untouched by the stopped one
    # A whole answer later, the stopped one has still not sent another word.
    assert len(received) == stopped_at, "no text may arrive after Stop"


async def test_closing_the_iterator_stops_generation(chat_model):
    expected = await first_answer(chat_model)
    stream = chat_model.stream(LONG, max_tokens=400, temperature=0)
    async for _ in stream:
        break
    await stream.aclose()
    answer = "".join(await collect(chat_model.stream(SHORT, max_tokens=32, temperature=0)))
    assert answer == expected


async def test_concurrent_chats_both_get_full_answers(chat_model):
    expected = await first_answer(chat_model)
    first, second = await asyncio.gather(
        collect(chat_model.stream(SHORT, max_tokens=32, temperature=0)),
        collect(chat_model.stream(SHORT, max_tokens=32, temperature=0)),
    )
    assert "".join(first) == "".join(second) == expected and expected.strip()


async def test_the_event_loop_stays_responsive_while_generating(chat_model):
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)  # another chat's handler, waiting its turn
            ticks += 1

    ticker = asyncio.create_task(tick())
    long_prompt = [
        {"role": "user", "content": "Summarise: " + "The tea garden lies on a slope. " * 50}
    ]
    ticks_per_delta = []
    async for _ in chat_model.stream(long_prompt, max_tokens=16, temperature=0):
        ticks_per_delta.append(ticks)
        ticks = 0
    ticker.cancel()
    # Reading the long prompt is the longest step: if it ran on the event loop, no
    # other task would have run before the first piece of the answer arrived.
    assert ticks_per_delta and ticks_per_delta[0] > 0, ticks_per_delta


@pytest.fixture(scope="module")
def library(tmp_path_factory, embedder):
    """data/ ingested once for the module (the pipeline test of each backend only reads)."""
    from rag.ingest.pipeline import Ingestor, discover
    from rag.library.search import open_library

    index = tmp_path_factory.mktemp("models") / "index"
    found = open_library(Settings(index=index, collection="test"), embedder)
    Ingestor(found).run(discover([SAMPLE_DATA]), progress=False)
    return found


async def test_pipeline_answers_from_the_library(library, chat_model, settings):
    options = settings.with_overrides(temperature=0.0, llm="embedded")
    # The pool serves this backend under the primary spec, whichever backend it is.
    pool = ModelPool(options, loaded={"embedded": chat_model})
    turn = await chat.ask("What is the daily meal allowance?", library, pool, options)
    assert turn.hits[0].chunk.source.endswith("travel-policy.md")
    # The passage that holds the answer goes to the model as [1]; what a 135M model
    # makes of it varies by runtime, so only the embedded runtime's words are checked
    # (in the CLI and browser tests).
    assert turn.context[0].chunk.heading.endswith("Meals")
    assert "[1] ### Meals" in turn.messages[-1]["content"]
    assert (
        "(from travel-policy.md, Northwind Labs travel policy > Expenses > Meals)"
        in (turn.messages[-1]["content"])
    )
    assert "55 euros" in turn.messages[-1]["content"]
    assert turn.text.strip() and turn.model == chat_model.name
    assert turn.stats.first_token_s is not None and turn.stats.answer_tokens > 0


async def test_a_repetition_penalty_is_accepted(chat_model):
    answer = "".join(
        await collect(
            chat_model.stream(SHORT, max_tokens=16, temperature=0, repetition_penalty=1.2)
        )
    )
    assert answer.strip()
