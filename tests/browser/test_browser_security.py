"""Security in a real browser: remote images fetch nothing, the policy leaves the app
working, and a login keeps strangers out."""

from __future__ import annotations

import subprocess
import sys

import pytest

from servers import App, ingest
from support_browser import ANSWER, ask
from support_security import Listener, ScriptedModel, image_doc


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def image_app(tmp_path_factory, listener):
    """The app over a document full of remote images, answered by a model that writes one
    into its answer, split over several tokens as a real model would stream it."""
    model = ScriptedModel(
        [
            "The keeper winds the lens every 4 hours [1]. ",
            "See ![cha",
            "rt](",
            listener.url,
            "/answer.png",
            ") for more.",
        ]
    )
    base = tmp_path_factory.mktemp("imgapp")
    docs = base / "docs"
    docs.mkdir()
    (docs / "lighthouse.md").write_text(image_doc(listener.url))
    ingest(docs, base / "index")
    running = App(base / "index", {"RAG_LLM": f"openai:scripted@{model.base}"})
    yield running
    running.close()
    model.shutdown()


def _blocked_by_policy(page) -> list[str]:
    seen: list[str] = []
    page.on(
        "console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None
    )
    return seen


def test_remote_images_in_passages_headings_and_answers_fetch_nothing(browser, image_app, listener):
    context = browser.new_context()
    page = context.new_page()
    blocked = _blocked_by_policy(page)
    try:
        page.goto(image_app.url)
        page.wait_for_selector(ANSWER, timeout=120_000)
        seen = ask(page, "How often does the Varna lighthouse keeper wind the lens?")

        page.locator("#step-Retrieval").last.click()  # shows the heading path
        page.wait_for_selector("text=Searched for:", timeout=10_000)
        page.wait_for_load_state("networkidle", timeout=15_000)
        assert listener.paths == []  # not the answer's image, not the heading's
        assert "The keeper winds the lens every 4 hours" in seen[-1]
        assert "chart" in seen[-1]  # the image's text, as a link
        page.locator(f"{ANSWER} a.element-link").first.click()  # shows the passage
        panel = page.locator("#side-view-content")
        panel.wait_for(timeout=10_000)
        page.wait_for_function(
            "() => document.querySelector('#side-view-content').innerText.includes('Beacon photo')",
            timeout=10_000,
        )
        page.wait_for_load_state("networkidle", timeout=15_000)

        assert listener.paths == []
        assert page.locator(f'img[src^="{listener.url}"]').count() == 0
        # The policy blocked only what Chainlit's page asks of the internet (fonts, KaTeX's
        # stylesheet), nothing the app needs.
        assert not [b for b in blocked if "script" in b.lower() and "googleapis" not in b]
    finally:
        context.close()


def test_the_policy_alone_stops_an_image_that_got_through(browser, image_app, listener):
    """Were an image ever rendered, the Content-Security-Policy keeps it from loading."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(image_app.url)
        page.wait_for_selector(ANSWER, timeout=120_000)
        with page.expect_console_message(
            lambda m: "Content Security Policy" in m.text and "img-src" in m.text, timeout=10_000
        ):
            page.evaluate(
                """url => { const img = document.createElement('img');
                img.src = url + '/smuggled.png'; document.body.appendChild(img); }""",
                listener.url,
            )
        assert "/smuggled.png" not in listener.paths
    finally:
        context.close()


# --- login ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def login_app(tmp_path_factory):
    base = tmp_path_factory.mktemp("loginapp")
    index = base / "index"
    subprocess.run(
        [sys.executable, "-m", "rag.cli", "user", "add", "alice", "--index", str(index)],
        input="correct horse\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    running = App(
        index, {"RAG_AUTH": "password", "CHAINLIT_AUTH_SECRET": "test-secret-" + "y" * 40}
    )
    yield running
    running.close()


def _log_in(page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.wait_for_selector("input[type=password]", timeout=60_000)
    page.fill("input#email", name)  # labelled "User name" (.chainlit/translations)
    page.fill("input[type=password]", password)
    page.keyboard.press("Enter")


def test_a_wrong_password_is_refused(browser, login_app):
    context = browser.new_context()
    page = context.new_page()
    try:
        _log_in(page, login_app.url, "alice", "wrong horse")
        page.wait_for_selector("text=Unable to sign in", timeout=10_000)
        assert page.locator(ANSWER).count() == 0
        assert page.locator("input[type=password]").count() == 1
    finally:
        context.close()


def test_a_user_added_by_command_logs_in_and_chats(browser, login_app):
    context = browser.new_context()
    page = context.new_page()
    try:
        _log_in(page, login_app.url, "alice", "correct horse")
        page.wait_for_selector(ANSWER, timeout=120_000)
        assert "Hello! Ask me about" in page.locator(ANSWER).first.inner_text()
    finally:
        context.close()
