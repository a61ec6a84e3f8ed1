"""The evidence sentence under an answer, and the passage it opens with the sentence
highlighted: the real app, the real tiny model, headless Chromium."""

from __future__ import annotations

import re

from servers import ROOT
from support_browser import ANSWER, ask


def test_the_evidence_sentence_is_shown_and_opens_its_passage_highlighted(page):
    seen = ask(page, "When was the Hollow Brook tea garden planted?")
    answer = seen[-1]
    # Under the answer, or above it when the evidence leads (the tiny model's answers
    # are led by their evidence, RAG_EVIDENCE_FIRST=auto).
    heading = next(
        h for h in ("From your document", "Evidence from your documents:") if h in answer
    )
    evidence = answer.split(heading, 1)[1]
    assert "It was planted in 1987 by the Ferreira family" in evidence
    assert "tea-garden.txt" in evidence.lower()

    link = page.locator(f"{ANSWER} a.element-link", has_text="Evidence 1").last
    assert "tea-garden.txt" in link.inner_text().lower()
    link.click()
    panel = page.locator("#side-view-content")
    panel.wait_for(timeout=10_000)
    panel.get_by_text("north-facing slope").first.wait_for(timeout=10_000)
    # Chainlit renders Markdown bold as a bold span.
    highlighted = panel.locator("strong, .font-bold")
    assert highlighted.count() == 1, panel.inner_html()[:3000]
    assert "It was planted in 1987 by the Ferreira family" in " ".join(
        highlighted.inner_text().split()
    )
    assert "Hollow Brook tea garden lies on a north-facing slope" in panel.inner_text()


def _passages_shown(page) -> int:
    """How many passages the side panel shows now (0 when it is closed)."""
    return page.evaluate("() => document.getElementById('side-view-content')?.children.length ?? 0")


def test_a_clicked_citation_opens_exactly_its_passage(page):
    # Several passages come with every answer; Chainlit used to open its panel by
    # itself on their arrival, titled "[1] ..." and showing all of them (#26).
    ask(page, "What is the hotel limit in London?")
    page.wait_for_function(
        "() => (document.getElementById('side-view-content')?.children.length ?? 0) <= 1",
        timeout=10_000,
    )
    links = page.locator(f"{ANSWER} a.element-link")
    citation = next(
        (links.nth(i) for i in range(links.count()) if text(links.nth(i)).startswith("[")),
        None,
    )
    assert citation is not None, page.locator(ANSWER).last.inner_text()
    name = text(citation)
    citation.click()
    panel = page.locator("#side-view-content")
    panel.wait_for(timeout=10_000)
    title = page.locator("#side-view-title")
    assert text(title) == name
    assert _passages_shown(page) == 1
    # Exactly one passage: its text (without the highlight's location line) is one
    # stretch of the document it names.
    document = name.split("] ", 1)[1].split(",", 1)[0]
    source = next((ROOT / "data").rglob(document))
    shown = [line for line in panel.inner_text().splitlines() if "characters" not in line]
    assert _plain(" ".join(shown)) in _plain(source.read_text())


def text(locator) -> str:
    """An element's text as written (links are shown in capitals by CSS)."""
    return " ".join((locator.text_content() or "").split())


def _plain(markdown: str) -> str:
    """Text as the panel renders it: no Markdown marks, single spaces."""
    return " ".join(re.sub(r"[#*_>`]", " ", markdown).split())
