"""Fallback between models, privacy towards remote ones, and the OpenAI-compatible API.

The failing primaries are real sockets: a port that refuses connections and a
server that accepts and never answers. The "remote" model is a real HTTP server
on loopback that records what it receives; the test declares loopback untrusted
so that the app must treat it as a machine elsewhere.
"""

from __future__ import annotations

import openai
import pytest

from rag.answers import answering
from rag.config import Settings
from rag.errors import ModelUnavailable
from rag.ingest.pipeline import Ingestor, discover
from rag.library.search import open_library
from rag.models.routing import ModelPool, task_of

from servers import SAMPLE_DATA, Recorder, Silent, check_sources_text, free_port, start_rag_server

SERVE_KEY = "s3cret-" + "k" * 32  # rag serve wants at least 32 characters


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder):
    """data/ ingested once for the module: the tests here only search it."""
    index = tmp_path_factory.mktemp("routing") / "index"
    library = open_library(Settings(index=index, collection="test"), embedder)
    Ingestor(library).run(discover([SAMPLE_DATA]), progress=False)
    return library


def pool_with_fallback(settings, primary: str, embedded_model) -> tuple[ModelPool, object]:
    options = settings.with_overrides(
        llm=primary, llm_fallback=["embedded"], llm_timeout=1.0, temperature=0.0
    )
    return ModelPool(options, loaded={"embedded": embedded_model}), options


async def test_a_refused_primary_falls_back_and_says_so(
    indexed, settings, embedded_model, processes
):
    refused = f"openai:phi@http://127.0.0.1:{free_port()}/v1"
    pool, options = pool_with_fallback(settings, refused, embedded_model)
    turn = await answering.ask("What is the daily meal allowance?", indexed, pool, options)
    assert turn.model == embedded_model.name and turn.text.strip()
    assert "55 euros" in turn.messages[-1]["content"]  # answered from the passages
    assert turn.skipped and "not reachable" in turn.skipped[0]
    assert any("Answered by" in n for n in turn.notices())


async def test_a_hanging_primary_times_out_then_falls_back(
    indexed, settings, embedded_model, processes
):
    silent = Silent()
    try:
        pool, options = pool_with_fallback(settings, f"openai:phi@{silent.base}", embedded_model)
        turn = await answering.ask("What is the daily meal allowance?", indexed, pool, options)
    finally:
        silent.close()
    assert turn.model == embedded_model.name and turn.text
    assert "timed out" in turn.skipped[0]


async def test_no_model_left_is_one_clear_error(indexed, settings, processes):
    options = settings.with_overrides(llm=f"openai:phi@http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ModelUnavailable, match="No model could answer"):
        await answering.ask(
            "What is the daily meal allowance?", indexed, ModelPool(options), options
        )


async def test_private_text_never_reaches_a_remote_model(library, tmp_path, settings, processes):
    public, private = tmp_path / "public", tmp_path / "private"
    public.mkdir(), private.mkdir()
    (public / "garden.md").write_text("# Garden\n\nThe public garden opens at nine o'clock.")
    (private / "diary.md").write_text(
        "# Diary\n\nMy secret garden code is HEDGEHOG-4471 and it opens at nine o'clock."
    )
    Ingestor(library).run(discover([public]), progress=False)
    Ingestor(library, extra_metadata={"private": True}).run(discover([private]), progress=False)

    remote = Recorder()
    options = settings.with_overrides(
        llm=f"openai:big@{remote.base}", llm_local_hosts=["localhost"]
    )  # 127.0.0.1 is "elsewhere"
    turn = await answering.ask("When does the garden open?", library, ModelPool(options), options)
    remote.shutdown()

    sent = str(remote.bodies)
    assert "public garden opens at nine" in sent
    assert "HEDGEHOG-4471" not in sent and "secret garden" not in sent
    assert any(h.chunk.extra.get("private") for h in turn.hits), "the private note was retrieved"
    assert turn.withheld == 1
    assert any("withheld" in n for n in turn.notices())


async def test_private_text_does_reach_a_local_model(library, tmp_path, settings, processes):
    private = tmp_path / "private"
    private.mkdir()
    (private / "diary.md").write_text("# Diary\n\nMy secret garden code is HEDGEHOG-4471.")
    Ingestor(library, extra_metadata={"private": True}).run(discover([private]), progress=False)
    local = Recorder()
    options = settings.with_overrides(llm=f"openai:small@{local.base}")  # loopback is trusted
    turn = await answering.ask("What is my garden code?", library, ModelPool(options), options)
    local.shutdown()
    assert "HEDGEHOG-4471" in str(local.bodies) and turn.withheld == 0


def test_code_questions_are_routed(settings):
    options = settings.with_overrides(
        llm="embedded", llm_routes={"code": "openai:coder@http://127.0.0.1:1/v1"}
    )
    pool = ModelPool(options)
    assert task_of("Why does `json.loads(text)` raise a KeyError in my python function?") == "code"
    assert task_of("When does the garden open?") is None
    assert pool.candidates("How do I fix this traceback in python: foo(bar)?")[0].startswith(
        "openai:coder"
    )
    assert pool.candidates("When does the garden open?") == ["embedded"]


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedded_model, processes):
    """``rag serve`` over the sample documents, with a key, in its own process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    index = tmp_path_factory.mktemp("api") / "index"
    env = {"RAG_INDEX": str(index), "RAG_TEMPERATURE": "0"}
    data = Path(__file__).resolve().parents[2] / "data"
    subprocess.run(
        [sys.executable, "-m", "ingest", str(data)],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    proc, base = start_rag_server(env, "--api-key", SERVE_KEY)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def test_the_api_answers_from_the_documents_with_sources(api):
    client = openai.OpenAI(base_url=api, api_key=SERVE_KEY)
    stream = client.chat.completions.create(
        model="local-rag-chat",
        stream=True,
        extra_headers={"X-RAG-Sources": "text"},
        messages=[{"role": "user", "content": "What is the daily meal allowance?"}],
    )
    chunks = list(stream)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert len(deltas) > 2
    # Which passages the answer cites, and so which are listed, is the model's choice.
    rag = finish.model_extra["rag"]
    assert check_sources_text("".join(deltas), rag).strip()
    assert rag["sources"][0]["label"].startswith("travel-policy.md")


def test_the_api_rejects_a_bad_key_and_names_unknown_models(api):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=api, api_key="wrong").models.list()
    client = openai.OpenAI(base_url=api, api_key=SERVE_KEY)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])


async def test_our_client_explains_a_bad_key_and_a_wrong_model(api, settings):
    from rag.models.openai_compat import OpenAICompatibleChat

    question = [{"role": "user", "content": "hi"}]
    wrong_key = OpenAICompatibleChat("local-rag-chat", api, api_key="nope")
    with pytest.raises(ModelUnavailable, match="rejected the API key"):
        await anext(wrong_key.stream(question, max_tokens=8, temperature=0))
    wrong_model = OpenAICompatibleChat("phi-9", api, api_key=SERVE_KEY)
    with pytest.raises(ModelUnavailable, match="it serves: local-rag-chat, smollm2"):
        await anext(wrong_model.stream(question, max_tokens=8, temperature=0))


def test_foundry_without_service_or_model_says_how_to_install(settings, tmp_path):
    from rag.models.spec import load_chat_model

    # Offline, with no Foundry Local service: the SDK's catalog cannot know the alias.
    options = settings.with_overrides(cache_dir=tmp_path / "cache")
    with pytest.raises(ModelUnavailable) as caught:
        load_chat_model("foundry:phi-4-mini", options)
    message = str(caught.value)
    assert "Install Foundry Local" in message and "foundry model run phi-4-mini" in message
    assert "RAG_LLM=onnx:PATH" in message
