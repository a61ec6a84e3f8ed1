"""The evidence sentence under an answer, and the passage it opens with the sentence
highlighted: the real app, the real tiny model, headless Chromium."""

from __future__ import annotations

from support_browser import ANSWER, ask


def test_the_evidence_sentence_is_shown_and_opens_its_passage_highlighted(page):
    seen = ask(page, "When was the Hollow Brook tea garden planted?")
    answer = seen[-1]
    assert "Evidence from your documents:" in answer
    evidence = answer.split("Evidence from your documents:", 1)[1]
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
