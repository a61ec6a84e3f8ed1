"""``rag serve`` against the official openai SDK: the contract of an OpenAI-compatible server.

Every test talks to a real ``rag serve`` process over HTTP, with the real embedding
model and the real tiny chat model, and checks each response against the SDK's own
types (strict ``model_validate``, not the SDK's lenient parsing). Two collections
are served from one index; a second server puts a "remote" model (a recording
stand-in on loopback, declared off this machine: a cloud API cannot run here)
behind the API to show private passages never reach it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject

from rag.config import Settings
from rag.library.search import open_library

from servers import Recorder, check_sources_text, start_rag_server
from support_security import alice_chat

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
README = ROOT / "README.md"
MEALS = [{"role": "user", "content": "What is the daily meal allowance?"}]
TEA = [{"role": "user", "content": "When is the first flush of the tea garden picked?"}]
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]

SERVE_KEY = "s3cret-" + "k" * 32  # rag serve wants at least 32 characters


def ingest(index: Path, collection: str, *paths: Path, private: bool = False) -> None:
    args = ["--private"] if private else []
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "--index",
            str(index),
            "--collection",
            collection,
            *args,
            *map(str, paths),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory, processes) -> Path:
    """One index, two libraries: the policies and guides, and the notes."""
    index = tmp_path_factory.mktemp("api") / "index"
    ingest(index, "library", DATA / "policies", DATA / "guides")
    ingest(index, "notes", DATA / "notes")
    return index


@pytest.fixture(scope="module")
def api(index, processes):
    proc, base = start_rag_server(
        {"RAG_INDEX": str(index), "RAG_TEMPERATURE": "0", "RAG_MAX_ANSWER_TOKENS": "64"},
        "--collection",
        "library",
        "--collection",
        "notes",
    )
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def chat_id(api) -> str:
    """The chat model's own id: the listed one that is no library."""
    ids = [m["id"] for m in httpx.get(f"{api}/models").json()["data"]]
    return next(i for i in ids if i != "local-rag-chat" and not i.startswith("rag-"))


@pytest.fixture
def client(api) -> openai.OpenAI:
    return openai.OpenAI(base_url=api, api_key="not-needed", max_retries=0)


def events(response: httpx.Response) -> list[str]:
    """The data of each server-sent event, as a client reads them."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def validated_stream(
    base: str, body: dict, headers: dict | None = None
) -> list[ChatCompletionChunk]:
    with httpx.stream(
        "POST",
        f"{base}/chat/completions",
        json={**body, "stream": True},
        headers=headers,
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = events(response)
    assert data[-1] == "[DONE]"
    return [ChatCompletionChunk.model_validate(json.loads(d)) for d in data[:-1]]


def sources_of(rag: dict) -> set[str]:
    return {Path(s["source"]).name for s in rag["sources"]}


@pytest.fixture(scope="module")
def meals_answer(api) -> str:
    """The answer to MEALS, asked once: the model's words vary by CPU, but on one
    machine at temperature 0 every door must give these same words."""
    reply = httpx.post(
        f"{api}/chat/completions",
        json={"model": "rag-library", "messages": MEALS, "temperature": 0},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


# --- models ------------------------------------------------------------------------------


def test_models_list_one_id_per_collection_and_the_chat_model(client, chat_id, api):
    listed = httpx.get(f"{api}/models").json()
    assert listed["object"] == "list"
    models = [Model.model_validate(m) for m in listed["data"]]
    ids = [m.id for m in models]
    assert ids == [
        "local-rag-chat",
        chat_id,
        "rag-library",
        "rag-library+sources",
        "rag-notes",
        "rag-notes+sources",
    ]
    assert all(m.created > 0 and m.owned_by for m in models)
    assert [m.id for m in client.models.list()] == ids
    assert client.models.retrieve("rag-notes").id == "rag-notes"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


# --- chat completions: whole, streamed, sync and async ---------------------------------


def test_a_whole_answer_has_usage_and_its_sources_in_the_rag_field(client, meals_answer):
    raw = client.chat.completions.with_raw_response.create(
        model="rag-library", messages=MEALS, temperature=0
    )
    reply = ChatCompletion.model_validate(raw.http_response.json())
    assert reply.object == "chat.completion" and reply.model == "rag-library"
    [choice] = reply.choices
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    assert choice.message.content == meals_answer and meals_answer.strip()
    assert "Sources" not in choice.message.content  # JSON clients get no noise
    usage = reply.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    rag = reply.model_extra["rag"]
    assert rag["collection"] == "library" and rag["grounded"] is True
    assert rag["sources"][0]["title"] == "travel-policy.md"
    assert "55 euros" in rag["sources"][0]["text"]
    assert [s["number"] for s in rag["sources"]] == list(range(1, len(rag["sources"]) + 1))
    assert isinstance(rag["evidence"], list) and isinstance(rag["notices"], list)


def test_a_streamed_answer_has_role_first_finish_reason_then_usage(api, client, meals_answer):
    chunks = validated_stream(
        api, {"model": "rag-library", "messages": MEALS, "stream_options": {"include_usage": True}}
    )
    assert len({c.id for c in chunks}) == 1 and all(c.model == "rag-library" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, finish, usage = chunks
    assert finish.choices[0].finish_reason in ("stop", "length")
    assert not finish.choices[0].delta.content
    assert all(c.choices[0].finish_reason is None for c in body)
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert text == meals_answer  # streamed or whole, the same answer
    assert finish.model_extra["rag"]["sources"][0]["title"] == "travel-policy.md"
    assert usage.choices == [] and usage.usage.completion_tokens > 0
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens

    # The SDK reads the same stream; without include_usage no usage chunk comes.
    seen = list(client.chat.completions.create(model="rag-library", messages=MEALS, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in seen if c.choices) == meals_answer
    assert all(c.usage is None for c in seen)


async def test_the_async_client_answers_whole_and_streamed(api, meals_answer):
    client = openai.AsyncOpenAI(base_url=api, api_key="not-needed", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="rag-library", messages=MEALS
    )
    reply = ChatCompletion.model_validate(raw.http_response.json())
    assert reply.choices[0].message.content == meals_answer
    stream = await client.chat.completions.create(
        model="rag-library", messages=MEALS, stream=True, stream_options={"include_usage": True}
    )
    chunks = [ChatCompletionChunk.model_validate(c.model_dump()) async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == meals_answer
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    await client.close()


def test_max_tokens_ends_with_length_and_stop_cuts_the_text(client, chat_id):
    for limit in ({"max_tokens": 8}, {"max_completion_tokens": 8}):
        raw = client.chat.completions.with_raw_response.create(
            model=chat_id, messages=LONG, temperature=0, **limit
        )
        reply = ChatCompletion.model_validate(raw.http_response.json())
        assert reply.choices[0].finish_reason == "length"
        assert 0 < reply.usage.completion_tokens <= 10
    from_library = client.chat.completions.create(
        model="rag-library", messages=MEALS, temperature=0, max_tokens=3
    )
    assert from_library.choices[0].finish_reason == "length"
    # The stop sequence is taken from the model's own answer, whatever its words are
    # on this CPU: two characters from its middle, first seen after its start.
    count = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    whole = (
        client.chat.completions.create(model=chat_id, messages=count, temperature=0, max_tokens=40)
        .choices[0]
        .message.content
    )
    stop = next(
        (
            whole[i : i + 2]
            for i in range(len(whole) // 2, len(whole) - 1)
            if whole.index(whole[i : i + 2]) > 0
        ),
        None,
    )
    assert stop, f"the answer is too short to stop inside: {whole!r}"
    cut = client.chat.completions.create(
        model=chat_id, messages=count, temperature=0, max_tokens=40, stop=[stop, "never"]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == whole.split(stop)[0]
    streamed = client.chat.completions.create(
        model=chat_id, messages=count, temperature=0, max_tokens=40, stop=stop, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == (
        cut.choices[0].message.content
    )


def test_sources_come_in_the_text_only_when_asked(api, client, meals_answer):
    for model, headers in (
        ("rag-library+sources", None),
        ("rag-library", {"X-RAG-Sources": "text"}),
    ):
        reply = client.chat.completions.create(model=model, messages=MEALS, extra_headers=headers)
        rag = reply.model_extra["rag"]
        assert rag["sources"][0]["label"].startswith("travel-policy.md")  # found first
        assert check_sources_text(reply.choices[0].message.content, rag) == meals_answer
        chunks = validated_stream(api, {"model": model, "messages": MEALS}, headers)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert check_sources_text(streamed, chunks[-1].model_extra["rag"]) == meals_answer


def test_text_sources_follow_the_answer_s_citations():
    """Checked on constructed turns: which passages a real answer cites is the model's
    choice, and the tests above take whatever it chose."""
    from rag.answers import answering as chat
    from rag.library.chunks import Chunk, Hit
    from rag.web.openai_api.answers import rag_field, sources_text

    hits = [
        Hit(Chunk(id=str(n), text=f"Passage {n}.", source=f"/d/{n}.md", index=0), 1.0, n)
        for n in (1, 2, 3)
    ]
    for answer, listed in (
        ("It is so [2], and so [3][2].", "Sources:\n- [2] 2.md\n- [3] 3.md"),
        ("It is so.", "Retrieved (not cited):\n- [1] 1.md\n- [2] 2.md\n- [3] 3.md"),
    ):
        turn = chat.Turn("q?", hits, context=hits, text=answer)
        text = answer + sources_text(turn)
        assert text.endswith("\n\n" + listed)
        assert check_sources_text(text, rag_field(turn, "c")) == answer


# --- library selection -------------------------------------------------------------------


def test_each_collection_answers_only_from_its_own_documents(client):
    def rag(model: str, messages: list[dict]) -> dict:
        reply = client.chat.completions.create(model=model, messages=messages, max_tokens=16)
        return reply.model_extra["rag"]

    library_files = {"travel-policy.md", "local-rag-chat-setup.md"}
    assert sources_of(rag("rag-library", MEALS)) <= library_files
    assert "travel-policy.md" in sources_of(rag("rag-library", MEALS))
    assert sources_of(rag("rag-notes", TEA)) == {"tea-garden.txt"}
    assert sources_of(rag("rag-notes", MEALS)) <= {"tea-garden.txt"}  # never the policy
    assert sources_of(rag("rag-library", TEA)) <= library_files
    assert rag("local-rag-chat", MEALS)["collection"] == "library"  # the first served


# --- errors ------------------------------------------------------------------------------


def expect_error(
    response: httpx.Response, status: int, code: str | None, param: str | None = None
) -> ErrorObject:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = ErrorObject.model_validate(body["error"])
    assert error.code == code and error.param == param and error.message.endswith(".")
    return error


def test_bad_requests_get_openai_error_shapes(api, client):
    post = f"{api}/chat/completions"
    expect_error(httpx.post(post, content=b"{not json"), 400, "invalid_json")
    expect_error(
        httpx.post(post, json={"model": "rag-library"}),
        400,
        "missing_required_parameter",
        "messages",
    )
    expect_error(
        httpx.post(post, json={"model": "rag-library", "messages": []}),
        400,
        "invalid_value",
        "messages",
    )
    expect_error(
        httpx.post(post, json={"model": "rag-library", "messages": MEALS, "temperature": 3}),
        400,
        "invalid_value",
        "temperature",
    )
    expect_error(
        httpx.post(post, json={"model": "rag-library", "messages": MEALS, "max_tokens": 0}),
        400,
        "invalid_value",
        "max_tokens",
    )
    expect_error(
        httpx.post(
            post,
            json={"model": "rag-library", "messages": MEALS, "stop": ["a", "b", "c", "d", "e"]},
        ),
        400,
        "invalid_value",
        "stop",
    )
    expect_error(
        httpx.post(
            post,
            json={
                "model": "rag-library",
                "messages": MEALS,
                "stream_options": {"include_usage": True},
            },
        ),
        400,
        "invalid_value",
        "stream_options",
    )
    expect_error(
        httpx.post(post, json={"model": "rag-library", "messages": MEALS, "n": 2}),
        400,
        "invalid_value",
        "n",
    )
    assistant_last = [*MEALS, {"role": "assistant", "content": "55 euros."}]
    expect_error(
        httpx.post(post, json={"model": "rag-library", "messages": assistant_last}),
        400,
        "invalid_value",
        "messages",
    )
    unknown = expect_error(
        httpx.post(post, json={"model": "gpt-9", "messages": MEALS}),
        404,
        "model_not_found",
        "model",
    )
    assert "rag-library" in unknown.message  # says what there is
    expect_error(httpx.get(f"{api}/nowhere"), 404, "not_found")
    expect_error(httpx.get(post), 405, "method_not_allowed")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=MEALS)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="rag-library", messages=MEALS, temperature=3)
    assert caught.value.param == "temperature"


@pytest.fixture(scope="module")
def remote_api(tmp_path_factory, processes):
    """``rag serve`` with a key, whose model is "remote": a recording stand-in on loopback
    (a cloud API cannot run here) that the settings declare off this machine."""
    root = tmp_path_factory.mktemp("remote")
    (root / "public").mkdir(), (root / "private").mkdir()
    (root / "public" / "garden.md").write_text(
        "# Garden\n\nThe public garden opens at nine o'clock."
    )
    (root / "private" / "diary.md").write_text(
        "# Diary\n\nMy secret garden code is HEDGEHOG-4471 and it opens at nine o'clock."
    )
    index = root / "index"
    ingest(index, "garden", root / "public")
    ingest(index, "garden", root / "private", private=True)
    remote = Recorder()
    proc, base = start_rag_server(
        {
            "RAG_INDEX": str(index),
            "RAG_COLLECTION": "garden",
            "RAG_LLM": f"openai:big@{remote.base}",
            "RAG_LLM_LOCAL_HOSTS": "localhost",
        },
        "--api-key",
        SERVE_KEY,
    )
    yield base, remote
    proc.terminate()
    proc.wait(timeout=30)


def test_private_passages_never_reach_a_remote_model_and_a_gone_model_is_503(remote_api):
    base, remote = remote_api
    key = {"Authorization": f"Bearer {SERVE_KEY}"}
    ask = {
        "model": "rag-garden",
        "messages": [{"role": "user", "content": "When does the garden open?"}],
    }

    expect_error(httpx.get(f"{base}/models"), 401, "invalid_api_key")
    expect_error(
        httpx.post(f"{base}/chat/completions", json=ask, headers={"Authorization": "Bearer wrong"}),
        401,
        "invalid_api_key",
    )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()

    reply = ChatCompletion.model_validate(
        httpx.post(f"{base}/chat/completions", json=ask, headers=key, timeout=60).json()
    )
    sent = str(remote.bodies)
    assert "public garden opens at nine" in sent
    assert "HEDGEHOG-4471" not in sent and "secret garden" not in sent
    rag = reply.model_extra["rag"]
    assert any("withheld" in n for n in rag["notices"])
    assert sources_of(rag) == {"garden.md"}  # the private passage was never in the prompt

    remote.shutdown()
    remote.server_close()  # now nothing listens: the model cannot answer
    gone = expect_error(
        httpx.post(f"{base}/chat/completions", json=ask, headers=key, timeout=60),
        503,
        "model_unavailable",
    )
    assert gone.type == "server_error"
    direct = next(
        m["id"]
        for m in httpx.get(f"{base}/models", headers=key).json()["data"]
        if m["id"].startswith("big")
    )
    expect_error(
        httpx.post(
            f"{base}/chat/completions",
            headers=key,
            timeout=60,
            json={**ask, "model": direct, "stream": True},
        ),
        503,
        "model_unavailable",
    )


def test_a_conversation_id_continues_a_stored_chat(api, index):
    # X-Conversation-Id names a stored chat (made when new): its history is the
    # conversation service's, as in the app and `rag chat`, not what the client sends.
    chat = str(uuid.uuid4())
    headers = {"X-Conversation-Id": chat}
    ask = {"model": "rag-library", "temperature": 0}
    first = httpx.post(
        f"{api}/chat/completions", json={**ask, "messages": MEALS}, headers=headers, timeout=120
    )
    assert first.status_code == 200, first.text
    assert first.json()["rag"]["conversation"] == chat
    follow = [{"role": "user", "content": "And what is the hotel limit in London?"}]
    second = httpx.post(
        f"{api}/chat/completions", json={**ask, "messages": follow}, headers=headers, timeout=120
    )
    assert second.status_code == 200, second.text

    export = subprocess.run(
        [sys.executable, "-m", "rag.cli", "chats", "export", chat],
        env={**os.environ, "RAG_INDEX": str(index)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    assert "daily meal allowance" in export.stdout
    assert "hotel limit in London" in export.stdout


async def test_a_look_alike_conversation_id_gets_400_and_nothing_of_another_users_chat(
    api, index, embedder, tmp_path
):
    # Alice's stored chat holds a file; the old folder naming dropped the "!" of bob's id.
    pin = "PIN 8356-QX"
    alice = await alice_chat(index, embedder, tmp_path, pin)
    ask = {
        "model": "rag-library",
        "messages": [{"role": "user", "content": "What is Alice's locker code?"}],
    }
    for twin in (f"{alice}!", f"{alice}.", alice.upper(), alice):
        reply = httpx.post(
            f"{api}/chat/completions", json=ask, headers={"X-Conversation-Id": twin}, timeout=120
        )
        assert pin not in reply.text and "pins.md" not in reply.text
        if twin == alice:  # her chat, not bob's
            expect_error(reply, 400, "invalid_value", "messages")
        else:
            error = expect_error(reply, 400, "invalid_value", "X-Conversation-Id")
            assert "UUID" in error.message


# --- embeddings --------------------------------------------------------------------------


def test_embeddings_are_the_library_s_own_and_find_the_same_top_chunk(api, index, client, embedder):
    library = open_library(Settings(index=index, collection="library"), embedder)
    ids = sorted(c.id for s in library.store.documents() for c in library.store.document_chunks(s))
    stored = library.store.fetch(ids)
    texts = [chunk.text for chunk, _ in stored.values()]

    raw = client.embeddings.with_raw_response.create(
        model="all-MiniLM-L6-v2", input=texts, encoding_format="float"
    )
    response = CreateEmbeddingResponse.model_validate(raw.http_response.json())
    assert [d.index for d in response.data] == list(range(len(texts)))
    assert response.usage.prompt_tokens == sum(embedder.count_tokens(texts)) > 0
    api_vectors = np.array([d.embedding for d in response.data], dtype=np.float32)
    stored_vectors = np.array([v for _, v in stored.values()], dtype=np.float32)
    # The same model on the same machine: the vectors ingest stored, to float32 rounding.
    np.testing.assert_allclose(api_vectors, stored_vectors, atol=1e-6)

    # base64 (the SDK's default) carries the same float32 numbers, bit for bit. (One
    # text alone, as batches of different sizes differ in the last float bits.)
    def one(encoding: str) -> list[float] | str:
        return httpx.post(
            f"{api}/embeddings",
            json={
                "model": "all-MiniLM-L6-v2",
                "input": texts[0],
                "encoding_format": encoding,
            },
        ).json()["data"][0]["embedding"]

    decoded = np.frombuffer(base64.b64decode(one("base64")), dtype="<f4")
    assert np.array_equal(decoded, np.array(one("float"), dtype=np.float32))
    by_sdk = client.embeddings.create(
        model="sentence-transformers/all-MiniLM-L6-v2", input=texts[0]
    )
    assert np.array_equal(np.array(by_sdk.data[0].embedding, dtype=np.float32), decoded)

    # A client's own vector search with these vectors finds what `rag query` finds first
    # when it searches by vector too (hybrid search adds word matches a client lacks).
    questions = [
        "What is the daily meal allowance?",
        "How do I install it on Windows?",
        "Which model should I use for real work?",
    ]
    found = subprocess.run(  # one process, the questions on stdin, searched one by one
        [
            sys.executable,
            "-m",
            "rag.cli",
            "query",
            "--index",
            str(index),
            "--collection",
            "library",
            "--json",
            "-k",
            "1",
        ],
        input="\n".join(questions) + "\n",
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "RAG_SEARCH_MODE": "vector"},
    )
    answers = map(json.loads, found.stdout.splitlines())
    first = {a["question"]: a["hits"][0]["text"] for a in answers}
    # Each question alone, as `rag query` embeds it: the Windows one leads its runner-up
    # by only 0.001, so the vectors must be the same to the last bit, not nearly.
    for question in questions:
        asked = client.embeddings.create(model="all-MiniLM-L6-v2", input=question)
        vector = np.array(asked.data[0].embedding, dtype=np.float32)
        assert first[question] == texts[int(np.argmax(api_vectors @ vector))], question


def test_embedding_errors(api):
    url = f"{api}/embeddings"
    expect_error(
        httpx.post(url, json={"model": "gpt-9", "input": "x"}), 404, "model_not_found", "model"
    )
    expect_error(
        httpx.post(url, json={"model": "all-MiniLM-L6-v2", "input": []}),
        400,
        "invalid_value",
        "input",
    )
    expect_error(
        httpx.post(url, json={"model": "all-MiniLM-L6-v2", "input": [""]}),
        400,
        "invalid_value",
        "input",
    )
    expect_error(
        httpx.post(url, json={"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 12}),
        400,
        "invalid_value",
        "dimensions",
    )
    expect_error(
        httpx.post(
            f"{api}/chat/completions", json={"model": "all-MiniLM-L6-v2", "messages": MEALS}
        ),
        400,
        "invalid_value",
        "model",
    )


# --- clients: README recipes and Open WebUI's requests -----------------------------------


def recipes() -> dict[str, str]:
    found = re.findall(
        r"<!-- recipe: ([\w-]+) -->\n```python\n(.*?)```", README.read_text(), re.DOTALL
    )
    return dict(found)


@pytest.mark.parametrize("name", ["sdk-sync", "sdk-stream", "sdk-async"])
def test_the_readme_recipes_run_as_written(api, name, meals_answer):
    code = recipes()[name]
    assert "http://127.0.0.1:8001/v1" in code
    done = subprocess.run(
        [sys.executable, "-c", code.replace("http://127.0.0.1:8001/v1", api)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert meals_answer.strip() and meals_answer in done.stdout
    if name != "sdk-async":
        assert "travel-policy.md" in done.stdout and "tokens:" in done.stdout
    else:
        assert "2 vectors of 384 dimensions" in done.stdout


def test_open_webui_requests_are_answered(api):
    """The requests Open WebUI makes (it is too heavy to run here): the model list with
    its bearer header, then a streamed chat with its system prompt, content parts and
    fields we ignore, then a title request (non-streamed) if the user left that on."""
    headers = {"Authorization": "Bearer not-needed", "X-OpenWebUI-User-Name": "Ada"}
    listed = httpx.get(f"{api}/models", headers=headers).json()["data"]
    assert "rag-library+sources" in [m["id"] for m in listed]
    body = {
        "model": "rag-library+sources",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": MEALS[0]["content"]}]},
        ],
        "stream_options": {"include_usage": True},
        "user": {"name": "Ada"},
        "metadata": {"chat_id": "c1"},
        "seed": 1,
        "top_p": 0.9,
    }
    chunks = validated_stream(api, body, headers)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert check_sources_text(text, finish.model_extra["rag"]).strip()
    assert chunks[-1].usage is not None
    title = httpx.post(
        f"{api}/chat/completions",
        headers=headers,
        timeout=120,
        json={
            "model": "rag-library",
            "stream": False,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "### Task:\nGenerate a concise title."}],
        },
    )
    ChatCompletion.model_validate(title.json())


def test_foundry_local_behind_rag_serve(index, tmp_path, processes):
    """The README's Foundry recipe with the model that is on this machine: the tiny model's
    folder registered with the Foundry Local SDK (phi-4-mini would need a download)."""
    from rag.models.embedded import prepare_embedded_model

    folder = prepare_embedded_model(Settings().cache_dir)
    proc, base = start_rag_server(
        {
            "RAG_INDEX": str(index),
            "RAG_LLM": f"foundry:{folder}",
            "RAG_CACHE_DIR": str(tmp_path / "cache"),
            "RAG_TEMPERATURE": "0",
        }
    )
    try:
        client = openai.OpenAI(base_url=base, api_key="not-needed", max_retries=0)
        own = next(m.id for m in client.models.list() if "foundry-local" in m.id)
        reply = client.chat.completions.create(model="rag-library", messages=MEALS, max_tokens=32)
        assert "Foundry Local" in reply.model_extra["rag"]["model"]
        assert reply.choices[0].message.content.strip()  # its words: the CPU's to choose
        assert reply.model_extra["rag"]["sources"][0]["title"] == "travel-policy.md"
        capital = [{"role": "user", "content": "What is the capital of France? One word."}]
        direct = client.chat.completions.create(model=own, messages=capital, max_tokens=16)
        assert direct.choices[0].message.content.strip() and direct.model == own
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- stop sequences, on any text stream --------------------------------------------------


async def cut(deltas: list[str], stops: list[str]) -> tuple[list[str], bool]:
    from rag.web.openai_api.stops import StopCut

    async def stream():
        for d in deltas:
            yield d

    stop = StopCut(stops)
    return [d async for d in stop.apply(stream())], stop.hit


async def test_a_stop_sequence_split_over_deltas_still_stops_the_text():
    text, hit = await cut(["Hello", " wor", "ld. E", "ND", " more"], ["END"])
    assert "".join(text) == "Hello world. " and hit
    assert len(text) > 1  # still streams: only a possible start of a stop is held back
    text, hit = await cut(["one\n", "\ntwo"], ["\n\n", "two"])
    assert "".join(text) == "one" and hit
    text, hit = await cut(["ab", "c"], ["x"])
    assert "".join(text) == "abc" and not hit
    assert await cut(["abc"], []) == (["abc"], False)


# --- a model that breaks off mid-answer --------------------------------------------------


class BreaksOff(ThreadingHTTPServer):
    """An OpenAI-style model server on loopback that streams a few words and then drops
    the connection in the middle of its chunked body."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _BreaksOffHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _BreaksOffHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        chunk = {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Half an"}, "finish_reason": None}],
        }
        event = f"data: {json.dumps(chunk)}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)  # no last chunk: the body is incomplete

    def log_message(self, *args) -> None:
        pass


def test_an_answer_that_breaks_off_ends_with_an_error_event(tmp_path, processes):
    model = BreaksOff()
    proc, base = start_rag_server(
        {"RAG_INDEX": str(tmp_path / "index"), "RAG_LLM": f"openai:m@{model.base}"}
    )
    try:
        own = next(
            m["id"] for m in httpx.get(f"{base}/models").json()["data"] if m["id"].startswith("m-")
        )
        body = {"model": own, "stream": True, "messages": MEALS}
        with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=60) as response:
            assert response.status_code == 200  # the answer had begun
            data = events(response)
        assert data[-1] != "[DONE]"
        error = json.loads(data[-1])
        assert set(error) == {"error"}
        ErrorObject.model_validate(error["error"])
        assert "Half an" in "".join(
            ChatCompletionChunk.model_validate(json.loads(d)).choices[0].delta.content or ""
            for d in data[:-1]
        )
        client = openai.OpenAI(base_url=base, api_key="not-needed", max_retries=0)
        with pytest.raises(openai.APIError):
            list(client.chat.completions.create(**body))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        model.shutdown()
        model.server_close()


# --- choosing what to serve --------------------------------------------------------------


def test_collections_to_serve_come_from_a_setting_and_ids_never_clash():
    from rag.errors import RagError
    from rag.web.openai_api.catalog import Catalog

    assert Settings(serve_collections="manuals, contracts").serve_collections == [
        "manuals",
        "contracts",
    ]
    assert Settings(serve_collections='["a b"]').serve_collections == ["a b"]
    library = object()  # the catalog only hands libraries on
    catalog = Catalog({"Team Docs": library}, "Phi (Foundry Local)", "all-MiniLM-L6-v2")
    assert catalog.listed == [
        "local-rag-chat",
        "phi-foundry-local",
        "rag-team-docs",
        "rag-team-docs+sources",
    ]
    assert catalog.chat("rag-team-docs+sources").sources_in_text
    assert catalog.embeds("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(RagError, match="share the id 'rag-team-docs'"):
        Catalog({"Team Docs": library, "team-docs": library}, "m", "e")
