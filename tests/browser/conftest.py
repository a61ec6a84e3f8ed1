"""The browser tests' fixtures: the app with the real tiny model, and headless Chromium."""

from __future__ import annotations

import pytest

from support_browser import CHROMIUM, open_chat, serve_app


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, embedded_model):
    """The app over data/ for every browser module (starting one costs an ingest and a
    Chainlit start); each test opens its own chat in it."""
    # Temperature 0: the same question gets the same answer within a run.
    settings = {"RAG_MAX_ANSWER_TOKENS": "200", "RAG_TEMPERATURE": "0"}
    yield from serve_app(tmp_path_factory.mktemp("app"), settings)


@pytest.fixture(scope="module")
def rambling_app_url(tmp_path_factory, embedded_model):
    """The app with the prompt and decoding of before #13 (no evidence note, no loop
    guard) and room for 2,000 tokens: the tiny model then writes on for many seconds,
    long enough to be stopped on any machine. With today's prompt its answers are
    short, and on a fast machine they can end before a click on Stop lands."""
    settings = {
        "RAG_MAX_ANSWER_TOKENS": "2000",
        "RAG_TEMPERATURE": "0",
        "RAG_EVIDENCE_IN_PROMPT": "false",
        "RAG_STOP_LOOPS": "false",
    }
    yield from serve_app(tmp_path_factory.mktemp("rambling"), settings)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, per module: while Playwright's sync API is open it holds an
    event loop in this thread, and every later test that runs asyncio would fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Our own Chromium build: Playwright's download needs the internet.
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context, page = open_chat(browser, app_url[0])
    yield page
    context.close()
