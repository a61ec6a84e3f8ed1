"""The real Chainlit app in headless Chromium, as the browser tests drive it: start it
over an ingested index, open a chat, ask, and read what the answer shows."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from servers import ROOT, App, ingest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ANSWER = '[data-step-type="assistant_message"]'
FINISHED = (
    "Sources:",
    "Retrieved passages",
    "could not find this in your documents",
    "Stopped before the end",
)


def serve_app(folder: Path, settings: dict[str, str]):
    """``data/`` ingested into ``folder``, then the app with these settings; yields its
    URL and environment."""
    index = folder / "index"
    ingest(ROOT / "data", index, settings)
    running = App(index, settings)
    yield running.url, running.env
    running.close()


def open_chat(browser, url):
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(ANSWER, timeout=120_000)  # the welcome message
    return context, page


SOURCES_LINE = re.compile(r"(Sources|Retrieved passages \(the answer cites none\)):")


def ask(page, question: str, timeout: float = 120) -> list[str]:
    """Send a question; return every distinct text the new answer showed while it grew."""
    page.wait_for_selector("#chat-submit", timeout=timeout * 1000)  # the last run is over
    before = page.locator(ANSWER).count()
    page.fill("#chat-input", question)
    page.keyboard.press("Enter")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = page.locator(ANSWER)
        if answers.count() > before:
            text = answers.last.inner_text()  # after any notes, e.g. on attached files
            if not seen or seen[-1] != text:
                seen.append(text)
            if any(end in text for end in FINISHED):
                if SOURCES_LINE.search(text):  # the passages arrive just after the text
                    left = max(deadline - time.monotonic(), 1)
                    answers.last.locator("a.element-link").first.wait_for(timeout=left * 1000)
                return seen
        time.sleep(0.03)
    raise AssertionError(f"no finished answer within {timeout} s; last seen: {seen[-1:]}")


def source_links(page) -> list[str]:
    last = page.locator(ANSWER).last
    return [link.inner_text().lower() for link in last.locator("a.element-link").all()]


def retrieval_step(page) -> str:
    """The text of the newest retrieval step, opened as a person would."""
    step = page.locator("#step-Retrieval").last
    step.click()
    # Opened: the newest step's text, which starts with the query searched, is shown.
    page.locator("text=Searched for:").last.wait_for(state="visible", timeout=10_000)
    return page.locator("body").inner_text()


def retrieved(step_text: str) -> list[str]:
    """The passages the newest answer was given, best first, as its retrieval step lists
    them (lower case): what was found, the same on any CPU. Source links show only what
    the answer cites, which is the model's choice and varies by CPU."""
    newest = step_text.rsplit("Searched for:", 1)[1]
    rows = [line for line in newest.splitlines() if " — score " in line]
    return [row.split(" — score ")[0].strip().lower() for row in rows]
