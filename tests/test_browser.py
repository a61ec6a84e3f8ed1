"""The real Chainlit app, the real tiny model, driven in headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ANSWER = '[data-step-type="assistant_message"]'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, embedded_model):
    index = tmp_path_factory.mktemp("app") / "index"
    env = {**os.environ, "RAG_INDEX": str(index)}
    subprocess.run([sys.executable, "-m", "ingest", str(ROOT / "data")], env=env, check=True,
                   capture_output=True, timeout=600)
    port = _free_port()
    log = (index.parent / "chainlit.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "chainlit", "run", "app.py", "--headless", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, (index.parent / "chainlit.log").read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Our own Chromium build: Playwright's download needs the internet.
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context()
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector(ANSWER, timeout=120_000)  # the welcome message
    yield page
    context.close()


def ask(page, question: str, timeout: float = 120) -> list[str]:
    """Send a question; return every distinct text the new answer showed while it grew."""
    before = page.locator(ANSWER).count()
    page.fill("#chat-input", question)
    page.keyboard.press("Enter")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = page.locator(ANSWER)
        if answers.count() > before:
            text = answers.nth(before).inner_text()
            if not seen or seen[-1] != text:
                seen.append(text)
            if "Sources:" in text or "Retrieved passages" in text:
                return seen
        time.sleep(0.03)
    raise AssertionError(f"no finished answer within {timeout} s; last seen: {seen[-1:]}")


def test_welcome_names_the_model_and_the_library(page):
    welcome = page.locator(ANSWER).first.inner_text()
    assert "SmolLM2-135M-Instruct" in welcome
    assert "5 indexed documents" in welcome


def test_a_question_streams_an_answer_with_openable_sources(page):
    seen = ask(page, "Describe how the tea is processed and harvested at Hollow Brook.")
    lengths = [len(text) for text in seen]
    assert len(seen) >= 3 and lengths == sorted(lengths), "the answer should grow token by token"

    links = page.locator(f"{ANSWER} a.element-link")
    assert links.count() >= 1
    assert "tea-garden.txt" in links.first.inner_text().lower()
    links.first.click()
    panel = page.locator("#side-view-content")
    panel.wait_for(timeout=10_000)
    assert "Notes on the Hollow Brook tea garden" in panel.inner_text()
