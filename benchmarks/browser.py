"""Answers written on the server against in the browser (#23), side by side in one run.

    python -m benchmarks.browser [--tokens 16] [--providers wasm,webgpu] [--prompts 4]
        [--parity-on wasm,webgpu] [--width 8]

The same prompt, greedy, written by the embedded model on the server (ONNX Runtime GenAI)
and by the app's WebGPU check page in headless Chromium on WASM (no adapter) and on
WebGPU (``--enable-unsafe-webgpu``: SwiftShader, a software GPU, where no real one is):
load time, first-token time and tokens per second. The page checks up to ``--width``
tokens a run (its guesses from the prompt, browser_llm.js; 1: one token a run). Then
greedy parity: how many of a few prompts get the same answer in the browser (on each
runtime of ``--parity-on``; WebGPU on SwiftShader takes minutes a prompt) as on the
server. Last, the chats the server sustains at one answer a minute each: generating, it
writes one answer at a time; with the browser writing, what is left per answer is
retrieval and the tokenizer.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.startup import ROOT, _free_port, _wait_until_serving, ingest_sample_data, start_app
from rag.config import Settings
from rag.models.browser import WebModel, prepare_web_model

PROMPTS = [
    "What is the capital of France? Answer in one sentence.",
    "Name three colours of the rainbow.",
    "What is 12 plus 30?",
    "Say hello in Spanish.",
    "What do bees make?",
    "Which planet is known as the red planet?",
]
QUESTION = "What is the nightly hotel limit in London?"


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


@functools.cache
def _server_model():
    from rag.models.spec import load_chat_model

    return load_chat_model("embedded", Settings())


def on_server(prompt: str, tokens: int) -> dict:
    """The embedded model on this machine: first token, tokens per second, the text."""
    model = _server_model()

    async def write() -> dict:
        started, first, pieces = time.perf_counter(), None, []
        async for piece in model.stream(messages(prompt), max_tokens=tokens, temperature=0):
            first = first if first is not None else time.perf_counter() - started
            pieces.append(piece)
        seconds = time.perf_counter() - started
        text = "".join(pieces)
        written = model.count_tokens(text)
        speed = (written - 1) / (seconds - first) if first is not None and written > 1 else None
        return {"first": first, "tokens_per_s": speed, "text": text, "tokens": written}

    return asyncio.run(write())


def in_browser(url: str, provider: str, query: str, timeout: float = 900) -> dict:
    """The app's check page in headless Chromium: window.ragCheck once it is done."""
    from playwright.sync_api import sync_playwright

    flags = ["--enable-unsafe-webgpu"] if provider == "webgpu" else ["--disable-gpu"]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--no-first-run", *flags],
        )
        page = browser.new_page()
        page.goto(url)  # logs in (on loopback everyone is the local user)
        page.wait_for_selector('[data-step-type="assistant_message"]', timeout=120_000)
        page.goto(f"{url}/browser-llm/static/webgpu_check.html?provider={provider}&{query}")
        page.wait_for_selector("body[data-done]", timeout=timeout * 1000)
        found = page.evaluate("window.ragCheck")
        browser.close()
    if found.get("error"):
        raise SystemExit(f"the check page failed on {provider}: {found['error']}")
    return found


def sustained(index: Path, model: WebModel, tokens: int) -> tuple[float, float]:
    """Seconds of the server's work per answer to the benchmark question: writing it
    (retrieval, the model, the checks), and with the browser writing it (retrieval, the
    prompt's tokens, the answer's text from its tokens, the checks)."""
    from rag.answers import answering, checks
    from rag.library.live import open_library
    from rag.models.routing import ModelPool

    settings = Settings(index=index, max_answer_tokens=tokens, temperature=0)
    library = open_library(settings)
    pool = ModelPool(settings)
    asyncio.run(answering.ask(QUESTION, library, pool, settings))  # the model loaded
    started = time.perf_counter()
    written = asyncio.run(answering.ask(QUESTION, library, pool, settings))
    server_s = time.perf_counter() - started

    async def browser_side() -> None:
        turn = await answering.prepare(QUESTION, library, settings)
        turn.context = turn.hits
        assert model.prompt_ids(written.messages)
        decode = model.decoder()
        turn.text = "".join(decode(t) for t in model.prompt_ids(messages(written.text)))
        await checks.check(turn, settings)

    started = time.perf_counter()
    asyncio.run(browser_side())
    return server_s, time.perf_counter() - started


def parity(
    url: str, model: WebModel, provider: str, prompts: list[str], args: argparse.Namespace
) -> None:
    """How many prompts get the server's greedy answer in the browser on ``provider``."""
    same = []
    for prompt in prompts:
        ids = ",".join(map(str, model.prompt_ids(messages(prompt))))
        there = on_server(prompt, args.tokens)["text"]
        query = f"tokens={args.tokens}&width={args.width}&ids={ids}"
        here = in_browser(url, provider, query)["text"]
        same.append(there.strip() == here.strip())
        if not same[-1]:
            print(f"  differs: {prompt!r}: server {there!r}, browser {here!r}")
    name = {"wasm": "WASM", "webgpu": "WebGPU"}.get(provider, provider)
    print(
        f"greedy parity ({name}): {sum(same)} of {len(same)} answers equal the server's",
        flush=True,
    )


def row(label: str, load: float | None, first: float, speed: float | None) -> str:
    loaded = f"{load:8.1f} s" if load is not None else f"{'-':>10}"
    rate = f"{speed:8.2f}" if speed else f"{'-':>8}"
    return f"{label:28} {loaded} {first:10.2f} s {rate} tokens/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16, help="answer tokens per run")
    parser.add_argument("--providers", default="wasm,webgpu", help="browser runtimes to time")
    parser.add_argument("--prompts", type=int, default=4, help="prompts for greedy parity")
    parser.add_argument("--answer-tokens", type=int, default=128, help="for chats sustained")
    parser.add_argument(
        "--cache",
        choices=["static", "dynamic"],
        default="static",
        help="the page's key-value cache: room for the whole answer, or grown each token",
    )
    parser.add_argument("--parity-on", default="wasm", help="runtimes whose parity to measure")
    parser.add_argument("--width", type=int, default=8, help="tokens the page checks a run")
    args = parser.parse_args()
    providers = [p for p in args.providers.split(",") if p]
    model = WebModel(prepare_web_model(Settings(), log=lambda line: None))
    probe = PROMPTS[0]

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        env = {
            **os.environ,
            "RAG_INDEX": str(index),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        ingest_sample_data(env)
        server = on_server(probe, args.tokens)
        print(
            f"one prompt ({len(model.prompt_ids(messages(probe)))} tokens), greedy, "
            f"{args.tokens} answer tokens at most; {os.cpu_count()} cores"
        )
        print(f"{'':28} {'load':>10} {'first token':>12} {'speed':>17}")
        print(row("server (ONNX Runtime GenAI)", None, server["first"], server["tokens_per_s"]))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryFile("w+") as log:
            started = time.perf_counter()
            app = start_app(port, env, log)
            try:
                _wait_until_serving(url, app, log, started, 300)
                for provider in providers:
                    query = f"tokens={args.tokens}&cache={args.cache}&width={args.width}"
                    got = in_browser(url, provider, query)
                    label = f"browser ({got['provider']})"
                    print(row(label, got["load_s"], got["first"], got["tokens_per_s"]), flush=True)
                    if got.get("cosine") is not None:
                        print(
                            f"  its query embedding against the server's: "
                            f"cosine {got['cosine']:.4f}"
                        )
                for provider in [p for p in args.parity_on.split(",") if p]:
                    parity(url, model, provider, PROMPTS[: args.prompts], args)
            finally:
                app.terminate()
                app.wait(timeout=30)
        server_s, browser_s = sustained(index, model, args.answer_tokens)
        print(
            f"chats sustained at one answer a minute each ({args.answer_tokens}-token answers "
            f"to {QUESTION!r}): server writing {60 / server_s:.1f} ({server_s:.2f} s of "
            f"server work an answer, one at a time); browser writing {60 / browser_s:.0f} "
            f"({browser_s:.2f} s)"
        )


if __name__ == "__main__":
    main()
