"""The real Chainlit app, the real tiny model, driven in headless Chromium.

The app (``app_url``) and Chromium (``browser``) are fixtures of conftest.py: one of
each serves every browser module."""

from __future__ import annotations

import subprocess
import sys

from support_browser import (
    ANSWER,
    SOURCES_LINE,
    ask,
    open_chat,
    retrieval_step,
    retrieved,
    source_links,
)


def test_welcome_names_the_model_and_the_library(page):
    welcome = page.locator(ANSWER).first.inner_text()
    assert "SmolLM2-135M-Instruct" in welcome
    assert "4 indexed documents" in welcome


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


def test_a_follow_up_is_searched_with_the_question_before_it(page):
    ask(page, "How do I install Local RAG Chat on Linux?")
    ask(page, "And on Windows?")
    step = retrieval_step(page)
    assert "Searched for: How do I install Local RAG Chat on Linux? And on Windows?" in step
    assert any(r.endswith("installation > windows") for r in retrieved(step))


def test_an_attached_pdf_answers_questions_in_its_chat_only(browser, app_url, tmp_path):
    from testdocs import write_pdf

    pdf = write_pdf(
        tmp_path / "zephyr.pdf",
        [
            "The Zephyr-9 survey drone carries 3 kilograms of cargo and flies for 47 minutes "
            "on one battery. Its range is 18 kilometres."
        ],
    )
    first_context, first = open_chat(browser, app_url[0])
    second_context, second = open_chat(browser, app_url[0])
    try:
        first.set_input_files("input[type=file]", str(pdf))
        # Chainlit keeps the send button disabled until every attachment is uploaded.
        first.wait_for_selector("#attachments", timeout=30_000)
        first.wait_for_selector("#chat-submit:enabled", timeout=60_000)
        ask(first, "How long does the Zephyr-9 drone fly on one battery?")
        assert (
            "Added zephyr.pdf to this chat (1 passage)" in first.locator(ANSWER).nth(1).inner_text()
        )
        assert retrieved(retrieval_step(first))[0].startswith("zephyr.pdf")

        # Another chat (another user) at the same time must not see that file.
        ask(second, "How long does the Zephyr-9 drone fly on one battery?")
        assert not any("zephyr" in link for link in source_links(second))
        assert "zephyr.pdf" not in retrieval_step(second).lower()
    finally:
        first_context.close()
        second_context.close()


def test_stop_keeps_the_partial_answer_and_the_next_question_is_answered(browser, rambling_app_url):
    context, page = open_chat(browser, rambling_app_url[0])
    try:
        page.fill("#chat-input", "Write a very long story about the tea garden and its visitors.")
        page.keyboard.press("Enter")
        answers = page.locator(ANSWER)
        page.wait_for_function(  # stop mid-answer: once the answer has begun
            "sel => { const a = document.querySelectorAll(sel);"
            " return a.length >= 2 && a[1].innerText.length >= 20; }",
            arg=ANSWER,
            timeout=60_000,
        )
        page.click("#stop-button")
        page.wait_for_selector("text=Stopped before the end of the answer", timeout=10_000)
        partial = answers.nth(1).inner_text()
        assert len(partial) >= 20

        seen = ask(page, "What is the daily meal allowance?")  # returns once it is finished
        assert SOURCES_LINE.split(seen[-1])[0].strip()  # its words: the CPU's to choose
        assert "Stopped before the end" not in seen[-1]
    finally:
        context.close()


def test_a_question_outside_the_documents_is_not_answered_from_them(page):
    seen = ask(page, "Who won the 1998 football World Cup?")
    assert seen[-1].startswith("I could not find this in your documents.")
    assert source_links(page) == []


def test_documents_ingested_while_the_app_runs_are_found(page, app_url, tmp_path):
    notes = tmp_path / "new-notes"
    notes.mkdir()
    (notes / "quokka.md").write_text(
        "# Quokka census\n\nThe 2026 quokka census on Rottnest counted 11,843 quokkas."
    )
    done = subprocess.run(
        [sys.executable, "-m", "ingest", str(notes)],
        env=app_url[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ask(page, "How many quokkas did the 2026 quokka census count?")
    assert retrieved(retrieval_step(page))[0].startswith("quokka.md")
