import itertools

from rag.ingest.chunking import Span, chunk_sections, pack, units
from rag.ingest.loaders import Section, markdown_sections


def test_chunks_fit_the_model_window_and_keep_their_spans(embedder):
    paragraph = " ".join(
        f"Sentence number {i} talks about tea gardens and harvests." for i in range(60)
    )
    text = f"Intro line.\n\n{paragraph}\n\nA closing paragraph."
    pieces = chunk_sections([Section(text, page=3)], 64, 16, embedder.count_tokens)

    assert len(pieces) > 3
    assert max(embedder.count_tokens([p.text for p in pieces])) <= 64
    for piece in pieces:
        assert text[piece.start : piece.end] == piece.text
        assert piece.page == 3
    # Every word of the input is in some chunk.
    covered = set()
    for p in pieces:
        covered.update(range(p.start, p.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


def test_consecutive_chunks_overlap(embedder):
    text = " ".join(f"Fact {i} is about topic {i}." for i in range(80))
    pieces = chunk_sections([Section(text)], 50, 12, embedder.count_tokens)
    for before, after in itertools.pairwise(pieces):
        assert after.start < before.end, "the next chunk should repeat the tail of the last"
        assert after.start > before.start


def test_paragraphs_are_not_split_when_they_fit(embedder):
    text = "First paragraph here.\n\nSecond paragraph here.\n\nThird one."
    spans = units(text, 100, embedder.count_tokens)
    assert [text[s.start : s.end] for s in spans] == [
        "First paragraph here.",
        "Second paragraph here.",
        "Third one.",
    ]


def test_a_word_longer_than_the_limit_stays_whole_and_progress_is_made():
    spans = [Span(0, 5, 3), Span(6, 40, 30), Span(41, 45, 3)]
    assert pack(spans, 10, 5) == [(0, 5), (6, 40), (41, 45)]


def test_markdown_sections_carry_their_heading_path():
    text = (
        "Preface.\n\n# Guide\nIntro.\n## Setup\nSteps.\n### Windows\nUse PowerShell.\n## Use\nAsk."
    )
    sections = markdown_sections(text)
    assert [s.heading for s in sections] == [
        "",
        "Guide",
        "Guide > Setup",
        "Guide > Setup > Windows",
        "Guide > Use",
    ]
    assert sections[3].text.startswith("### Windows")
