"""Answers written in the user's own browser (#23), in the real app and headless Chromium:
the server's chat model is unreachable (RAG_LLM points at a closed port), so only the
browser can answer. Chromium with ``--enable-unsafe-webgpu`` has a WebGPU adapter
(SwiftShader, a software GPU); without the flag it has none and answers on WASM.

SwiftShader takes 10-20 s a run of the model where a real GPU takes milliseconds, so the
question is one whose answer copies its one passage: the page's guesses (prompt lookup)
are then mostly right and the answer, a sentence that cites the passage, takes about three
runs after the prompt. They prove the way, not the speed (benchmarks.browser).
Users log in by header (``RAG_AUTH=header:X-User``) so that a second user can attack the
first one's answer.
"""

from __future__ import annotations

import re
import time

import pytest

from servers import ROOT, App, free_port, ingest
from support_browser import ANSWER, CHROMIUM, SOURCES_LINE, ask, source_links

QUESTION = "What is the daily meal allowance?"
PASSAGE = "travel-policy.md"
CITATION = re.compile(r"\[(\d+)\]")
MODEL_PART = "The model's answer"  # after the evidence, when the evidence leads
# Records what the server hands this page (its link, its jobs), as the page script gets it.
RECORD = """window.addEventListener("message", (e) => {
  if (e.data && e.data.type === "rag-browser-llm")
    (window.ragSaid = window.ragSaid || []).push(e.data);
});"""
SAID = "(window.ragSaid || []).filter((m) => m.kind === '{}')"


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_model):
    index = tmp_path_factory.mktemp("browser-llm") / "index"
    settings = {
        "RAG_LLM": f"openai:unreachable@http://127.0.0.1:{free_port()}/v1",  # a closed port
        "RAG_BROWSER_LLM": "on",
        # The shortest prompt that still proves the way: one passage, no evidence note
        # (132 prompt tokens instead of 160). The answer is about 11 tokens; room for
        # more in case another CPU's answer runs on.
        "RAG_MAX_ANSWER_TOKENS": "24",
        "RAG_TOP_K": "1",
        "RAG_EVIDENCE_IN_PROMPT": "false",
        "RAG_TEMPERATURE": "0",
        "RAG_AUTH": "header:X-User",
    }
    ingest(ROOT / "data", index, settings)
    running = App(index, settings, unset=("DATABASE_URL",))
    yield running.url
    running.close()


@pytest.fixture(scope="module")
def chromium():
    """Two headless Chromiums: one with a WebGPU adapter, one without."""
    from playwright.sync_api import sync_playwright

    common = ["--no-sandbox", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as p:
        webgpu = p.chromium.launch(
            executable_path=CHROMIUM, args=[*common, "--enable-unsafe-webgpu"]
        )
        wasm = p.chromium.launch(executable_path=CHROMIUM, args=[*common, "--disable-gpu"])
        yield {"webgpu": webgpu, "wasm": wasm}
        webgpu.close()
        wasm.close()


def open_as(browser, url: str, user: str, provider: str):
    context = browser.new_context(extra_http_headers={"X-User": user})
    context.add_init_script(RECORD)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(ANSWER, timeout=120_000)
    # The page script has said hello: the server knows what this browser can do.
    page.wait_for_selector(f"html[data-rag-browser-llm='{provider}']", timeout=60_000)
    return context, page


def logged_in(browser, url: str, user: str):
    """A user logged in as the chat page logs in (by header), without a page: one who
    only posts to another's answer loads no model of their own while it is written."""
    context = browser.new_context(extra_http_headers={"X-User": user})
    assert context.request.post(f"{url}/auth/header").ok
    assert context.request.get(f"{url}/user").json()["identifier"] == user  # the cookie works
    return context


def said(page, kind: str, timeout: float = 120) -> dict:
    """The first message of this kind the server sent the page (polled: the page's CSP
    forbids the eval that Playwright's wait_for_function needs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := page.evaluate(SAID.format(kind)):
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"the server sent the page no {kind} within {timeout} s")


def cited(answer: str) -> set[str]:
    """The passage numbers the model's sentences cite (their own [n] or one the support
    check gave them: rag/answers/citations.py), checked to name the retrieved passage in
    the sources line."""
    line = SOURCES_LINE.search(answer)
    body = answer[: line.start()] if line else answer  # not the passages' own numbers
    body = body.split(MODEL_PART, 1)[-1]  # not the evidence quote, when it leads
    numbers = set(CITATION.findall(body))
    assert numbers, f"the answer cites no passage: {answer!r}"
    for n in numbers:
        assert f"[{n}] {PASSAGE}" in answer.lower(), (n, answer)
    return numbers


def answered_in_browser(page, provider: str) -> str:
    answer = ask(page, QUESTION, timeout=600)[-1]
    assert f"Written in this browser ({provider})." in answer
    for n in cited(answer):  # each [n] links the passage it was given
        assert any(link.startswith(f"[{n}] {PASSAGE}") for link in source_links(page)), n
    return answer


def kept_after_reload(page, provider: str) -> None:
    page.wait_for_url(re.compile(r".*/thread/[\w-]+$"), timeout=30_000)
    page.reload()
    kept = page.locator(ANSWER, has_text=f"Written in this browser ({provider}).")
    kept.first.wait_for(timeout=60_000)  # from the stored chat, not this page's memory
    cited(kept.first.inner_text())


def test_with_webgpu_the_browser_writes_the_answer_and_the_chat_keeps_it(chromium, app):
    context, page = open_as(chromium["webgpu"], app, "alice", "webgpu")
    answered_in_browser(page, "WebGPU")
    kept_after_reload(page, "WebGPU")
    context.close()


def test_without_webgpu_it_answers_on_wasm_and_no_other_user_can_feed_the_answer(chromium, app):
    context, page = open_as(chromium["wasm"], app, "alice", "wasm")
    # Bob, logged in too, learns the id of Alice's answer while her browser writes it.
    bob = logged_in(chromium["wasm"], app, "bob")
    page.fill("#chat-input", QUESTION)
    page.keyboard.press("Enter")
    job = said(page, "job")["job"]
    link = said(page, "hello")["link"]
    forged = bob.request.post(f"{app}/browser-llm/jobs/{job}", data={"tokens": [64, 64, 64]})
    assert forged.status == 404  # as if no such answer existed
    hello = bob.request.post(f"{app}/browser-llm/links/{link}/hello", data={"webgpu": True})
    assert hello.status == 404
    page.locator(ANSWER, has_text="Written in this browser (WASM).").first.wait_for(timeout=600_000)
    answer = page.locator(ANSWER).last.inner_text()
    assert "PPP" not in answer  # token 64 is "P": none of Bob's tokens got in
    cited(answer)
    kept_after_reload(page, "WASM")
    bob.close()
    context.close()
