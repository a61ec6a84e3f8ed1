"""The model whose answers the browser writes (#23): the server's own prompt tokens go to
the page, the page's tokens come back as the answer's text, and Stop stops the page.

The page is played here by posting token ids as it does (its real run is in
tests/browser/test_browser_llm.py); everything else is the real model folder."""

from __future__ import annotations

import asyncio
import json

import pytest

from rag.config import Settings
from rag.models.browser import LOGIT_ROWS, BrowserChat, WebModel, prepare_web_model, web_graph
from rag.models.browser_jobs import Links, NotFound
from rag.models.embedded import prepare_embedded_model

MESSAGES = [
    {"role": "system", "content": "Answer from the passages."},
    {"role": "user", "content": "What is the nightly hotel limit in London?"},
]


@pytest.fixture(scope="module")
def web_model(embedded_model):
    return WebModel(prepare_web_model(Settings(), log=lambda line: None))


def test_the_page_gets_the_servers_own_prompt_tokens(web_model):
    import onnxruntime_genai as og

    # ONNX Runtime GenAI's tokenizer, as the server's model writes its prompt: that model
    # runs in a worker process (rag/models/worker.py), so the test builds its own.
    source = prepare_embedded_model(Settings().cache_dir)
    tokenizer = og.Tokenizer(og.Model(str(source)))
    prompt = tokenizer.apply_chat_template(json.dumps(MESSAGES), add_generation_prompt=True)
    assert web_model.prompt_ids(MESSAGES) == list(tokenizer.encode(prompt))
    assert web_model.files().keys() == {"model.onnx", "model.onnx.data"}


def test_the_pages_tokens_become_the_answer_and_stop_stops_the_page(web_model):
    async def run() -> None:
        sent: list[dict] = []

        async def notify(message: dict) -> None:
            sent.append(message)

        links = Links()
        link = links.hello(links.open("alice", notify).token, "alice", webgpu=True, adapter="x")
        chat = BrowserChat(web_model, link)
        stream = chat.stream(MESSAGES, max_tokens=50, temperature=0)
        reading = asyncio.ensure_future(anext(stream))
        while not sent:
            await asyncio.sleep(0.01)  # the job reaches the page
        job = sent[0]
        assert job["tokens"] == web_model.prompt_ids(MESSAGES) and job["max_tokens"] == 50
        words = web_model._tokenizer.encode("London costs", add_special_tokens=False).ids
        links.post(job["job"], "alice", {"tokens": words[:1], "provider": "wasm"})
        assert await reading == "London"
        assert chat.name.endswith("written in this browser (WASM)")  # it fell back to WASM
        await stream.aclose()  # Stop
        with pytest.raises(NotFound):  # the page's next token is refused: it stops
            links.post(job["job"], "alice", {"tokens": words[1:2]})

    asyncio.run(run())


def test_an_end_token_ends_the_answer(web_model):
    async def run() -> None:
        links = Links()
        jobs: list[dict] = []

        async def notify(message: dict) -> None:
            jobs.append(message)
            ids = web_model._tokenizer.encode("Yes.", add_special_tokens=False).ids
            links.post(message["job"], "alice", {"tokens": [*ids, web_model.eos[0], 99]})

        link = links.hello(links.open("alice", notify).token, "alice", webgpu=False, adapter=None)
        text = "".join(
            [
                t
                async for t in BrowserChat(web_model, link).stream(
                    MESSAGES, max_tokens=9, temperature=0
                )
            ]
        )
        assert text == "Yes." and jobs

    asyncio.run(run())


def test_the_web_graph_gives_the_logits_of_the_last_positions_only(web_model):
    """The page reads the last row after the prompt and at most LOGIT_ROWS rows after a
    run (browser_llm.js): the cut graph gives exactly those rows of the whole graph's."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    source = prepare_embedded_model(Settings().cache_dir) / "model.onnx"
    whole = web_graph(source, rows=None)
    cut = onnx.load(str(web_model.folder / "model.onnx"), load_external_data=False)
    for graph in (whole, cut):  # the same weights; the web folder links to them, and ONNX
        # refuses to read through a link: read from the embedded model's folder instead
        onnx.load_external_data_for_model(graph, str(source.parent))
    sessions = [ort.InferenceSession(m.SerializeToString()) for m in (whole, cut)]
    shapes = web_model.shapes
    for length in (3, 12):  # fewer than LOGIT_ROWS tokens, and more
        feeds = {
            "input_ids": np.arange(100, 100 + length, dtype=np.int64)[None],
            "attention_mask": np.ones((1, length), dtype=np.int64),
        }
        for i in range(shapes["layers"]):
            for part in ("key", "value"):
                dims = (1, shapes["kv_heads"], 0, shapes["head_size"])
                feeds[f"past_key_values.{i}.{part}"] = np.zeros(dims, dtype=np.float32)
        full, last = (s.run(["logits"], feeds)[0] for s in sessions)
        assert last.shape[1] == min(length, LOGIT_ROWS) and full.shape[1] == length
        np.testing.assert_allclose(last, full[:, -last.shape[1] :], rtol=1e-3, atol=1e-3)
