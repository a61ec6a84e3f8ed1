"""Chats that last, in the real app in headless Chromium: history in the sidebar,
resume with attached files, one user's chats hidden from another, deletion, export.

Users log in by header (``RAG_AUTH=header:X-User``), as behind a reverse proxy:
each browser context sends its own ``X-User`` header.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers import ROOT, App, ingest
from support_browser import ANSWER, ask, retrieval_step, retrieved, source_links


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_model):
    index = tmp_path_factory.mktemp("history") / "index"
    settings = {"RAG_MAX_ANSWER_TOKENS": "120", "RAG_TEMPERATURE": "0", "RAG_AUTH": "header:X-User"}
    ingest(ROOT / "data", index, settings)
    running = App(index, settings, unset=("DATABASE_URL",))
    yield running.url, running.env, index
    running.close()


def open_as(browser, url: str, user: str, path: str = "/"):
    context = browser.new_context(extra_http_headers={"X-User": user})
    page = context.new_page()
    page.goto(url + path)
    page.wait_for_selector(ANSWER, timeout=120_000)
    return context, page


def thread_id(page) -> str:
    page.wait_for_url(re.compile(r".*/thread/[\w-]+$"), timeout=30_000)
    return page.url.rsplit("/", 1)[1]


def open_from_sidebar(page, url: str, title: str) -> None:
    """A new chat, then the past one picked in the sidebar, as a person would."""
    page.goto(url)
    page.wait_for_selector(ANSWER, timeout=120_000)
    page.locator("a[href^='/thread/']", has_text=title).first.click()
    page.wait_for_url(re.compile(r".*/thread/[\w-]+$"), timeout=30_000)
    page.locator("[data-step-type='user_message']", has_text=title).first.wait_for(timeout=30_000)
    page.wait_for_selector("#chat-submit", timeout=60_000)


def attach(page, path: Path) -> None:
    page.set_input_files("input[type=file]", str(path))
    page.wait_for_selector(f"text={path.name}", timeout=30_000)


def test_a_chat_is_listed_reopened_and_continued(browser, app):
    url = app[0]
    context, page = open_as(browser, url, "ann")
    try:
        ask(page, "How do I install Local RAG Chat on Linux?")
        chat = thread_id(page)
        page.reload()
        page.wait_for_selector(ANSWER, timeout=120_000)
        open_from_sidebar(page, url, "How do I install Local RAG Chat on Linux?")
        assert thread_id(page) == chat
        ask(page, "And on Windows?")  # means nothing without the first question
        step = retrieval_step(page)
        assert "Searched for: How do I install Local RAG Chat on Linux? And on Windows?" in step
        assert any(r.endswith("installation > windows") for r in retrieved(step))
    finally:
        context.close()


def zephyr_pdf(folder: Path) -> Path:
    from testdocs import write_pdf

    return write_pdf(
        folder / "zephyr.pdf",
        [
            (
                "The Zephyr-9 survey drone carries 3 kilograms of cargo and flies for 47 minutes "
                "on one battery. Its range is 18 kilometres."
            )
        ],
    )


ZEPHYR = "How long does the Zephyr-9 drone fly on one battery?"


def test_attached_files_survive_a_reconnect_and_a_resume_and_stay_private(browser, app, tmp_path):
    url, _, index = app
    context, page = open_as(browser, url, "ann")
    other_context, other = open_as(browser, url, "bob")
    try:
        attach(page, zephyr_pdf(tmp_path))
        ask(page, ZEPHYR)
        assert retrieved(retrieval_step(page))[0].startswith("zephyr.pdf")
        chat = thread_id(page)
        files = index / "chats" / "files" / chat
        assert (files / "files" / "zephyr.pdf").exists()

        # A network blip: the socket drops and comes back; the chat keeps its file.
        context.set_offline(True)
        page.wait_for_selector("text=Could not reach the server", timeout=30_000)
        context.set_offline(False)
        page.wait_for_selector("text=Could not reach the server", state="detached", timeout=60_000)
        ask(page, "What does the Zephyr-9 drone carry?")
        assert retrieved(retrieval_step(page))[0].startswith("zephyr.pdf")

        # Reload, reopen from the sidebar: the file is still searched.
        page.reload()
        page.wait_for_selector(ANSWER, timeout=120_000)
        open_from_sidebar(page, url, ZEPHYR)
        ask(page, ZEPHYR)
        assert retrieved(retrieval_step(page))[0].startswith("zephyr.pdf")

        # Another user sees neither the chat nor the file.
        other.reload()
        other.wait_for_selector(ANSWER, timeout=120_000)
        assert other.locator(f"a[href='/thread/{chat}']").count() == 0
        assert other.locator("a[href^='/thread/']", has_text="Zephyr").count() == 0
        ask(other, ZEPHYR)
        assert not any("zephyr" in link for link in source_links(other))
        assert "zephyr.pdf" not in retrieval_step(other).lower()
        stolen = other.request.get(f"{url}/project/thread/{chat}")
        assert stolen.status in (401, 403, 404)
        assert "Zephyr" not in stolen.text()
    finally:
        context.close()
        other_context.close()


def test_deleting_a_chat_deletes_its_files_from_disk(browser, app, tmp_path):
    url, _, index = app
    context, page = open_as(browser, url, "carol")
    try:
        pdf = zephyr_pdf(tmp_path)
        attach(page, pdf)
        ask(page, ZEPHYR)
        chat = thread_id(page)
        files = index / "chats" / "files" / chat
        assert (files / "files" / "zephyr.pdf").exists()
        # Chainlit's own copy of the upload is not kept once the chat has the file.
        copies = [
            p
            for p in (ROOT / ".files").rglob("*")
            if p.is_file() and p.read_bytes() == pdf.read_bytes()
        ]
        assert copies == []

        item = page.locator(f"a[href='/thread/{chat}']")
        item.hover()
        item.locator("#thread-options").click()
        page.get_by_role("menuitem", name="Delete").click()
        page.get_by_role("button", name="Confirm").click()
        item.wait_for(state="detached", timeout=30_000)
        deadline = time.monotonic() + 30
        while files.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not files.exists()
        done = subprocess.run(
            [sys.executable, "-m", "rag.cli", "chats", "list", "--all"],
            env=app[1],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert chat not in done.stdout
    finally:
        context.close()


def test_a_chat_exports_as_markdown_and_the_app_cites_as_rag_ask(browser, app):
    url, env, _ = app
    question = "What is the daily meal allowance?"
    context, page = open_as(browser, url, "dave")
    try:
        ask(page, question)
        shown = [s for s in source_links(page) if s.startswith("[")]  # not the evidence links
        page.get_by_role("button", name="Export chat as Markdown").last.click()
        page.wait_for_selector("text=This chat as Markdown:", timeout=30_000)
        link = page.locator("a", has_text="chat.md").last
        link.wait_for(timeout=30_000)
        href = link.get_attribute("href")
        exported = page.request.get(href if href.startswith("http") else url + href).text()
    finally:
        context.close()
    assert f"## {question}" in exported
    assert re.search(r"^- \[\d+\] .+ \(`/.+`\)$", exported, re.M)  # what it cites: its choice

    asked = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", question],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    listed = re.findall(r"^  (\[\d+\] .+?)  \(", asked.stdout, re.MULTILINE)
    # The same numbered passages: what each shows may differ only by what its answer
    # chose to cite (two runs of the model), never by which passage a number names.
    numbered = [s.lower() for s in listed] + shown
    assert listed and shown
    by_number: dict[str, set[str]] = {}
    for s in numbered:
        number, _, name = s.partition(" ")
        by_number.setdefault(number, set()).add(name)
    assert all(len(names) == 1 for names in by_number.values()), by_number
