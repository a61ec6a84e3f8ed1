"""Hybrid retrieval on the real index: the lexical index in step with Chroma, fusion,
diversification, source filters and the sample QA set as a quality floor."""

from pathlib import Path

import pytest

from rag.ingest.pipeline import Ingestor, discover, forget
from rag.library import evaluation, filters
from rag.library.chunks import Chunk
from rag.library.search import open_library, search
from rag.library.word_index import LexicalIndex, lexical_path, match_expression

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_QA = ROOT / "benchmarks" / "qa" / "sample.jsonl"
MODES = ("vector", "lexical", "hybrid")


def ingest(library, folder):
    return Ingestor(library).run(discover([folder]), progress=False)


def assert_in_step(library):
    """Both indexes hold the same ids, and every mode returns only chunks that exist now."""
    report = library.store.check()
    assert report.consistent, report.as_dict()
    assert report.chunks_in_chroma == report.chunks_in_word_index
    current = {
        c.id: c.text for s in library.store.documents() for c in library.store.document_chunks(s)
    }
    assert len(current) == report.chunks_in_chroma
    for question in (
        "ladybirds against aphids in the tea garden",
        "hotel limit in London",
        "coffee",
        "quokkas",
        "inverter fan",
    ):
        for mode in MODES:
            hits = search(library, question, 10, library.settings.with_overrides(search_mode=mode))
            assert all(current.get(h.chunk.id) == h.chunk.text for h in hits), (mode, question)
            assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_lexical_index_follows_ingest_update_and_forget(library, sample_docs):
    ingest(library, sample_docs)
    assert_in_step(library)
    tea = sample_docs / "notes" / "tea-garden.txt"
    old_tea = {
        h.chunk.id for h in search(library, "ladybirds aphids", 10) if h.chunk.source == str(tea)
    }
    assert old_tea, "the tea garden's ladybirds should be found before the change"

    tea.write_text("The Hollow Brook garden now grows coffee, not tea.\n")
    (sample_docs / "policies" / "travel-policy.md").unlink()
    (sample_docs / "notes" / "new.md").write_text("# New\n\nThe new note mentions quokkas.\n")
    ingest(library, sample_docs)
    assert_in_step(library)
    assert not old_tea & {i for i, _ in library.store.keyword("ladybirds aphids", 50)}
    assert [h.chunk.source for h in search(library, "quokkas", 1)] == [
        str(sample_docs / "notes" / "new.md")
    ]
    assert not any(
        h.chunk.source.endswith("travel-policy.md")
        for h in search(library, "hotel limit in London", 10)
    )

    forget(library, [sample_docs / "notes"])
    assert_in_step(library)
    assert not any("/notes/" in h.chunk.source for h in search(library, "quokkas coffee", 10))


def test_a_missing_damaged_or_stale_lexical_index_is_repaired_on_open(
    library, settings, embedder, sample_docs
):
    ingest(library, sample_docs)
    expected = library.store.check().chunks_in_chroma
    path = lexical_path(settings.index, settings.collection)
    library.store.close()

    path.unlink()  # as an index built before the lexical index existed
    reopened = open_library(settings, embedder)
    report = reopened.store.check()
    assert report.consistent and report.chunks_in_word_index == expected
    reopened.store.close()

    path.write_bytes(b"not a database at all" * 100)
    reopened = open_library(settings, embedder)
    report = reopened.store.check()
    assert report.consistent and report.chunks_in_word_index == expected

    # A row only the word index has (written by hand here): never returned, then repaired.
    ghost = Chunk(
        id="ghost",
        text="The zeppelin hangar holds twelve zeppelins.",
        source=str(sample_docs / "ghost.md"),
        index=0,
    )
    words = LexicalIndex(path)
    words.add([ghost])
    words.close()
    assert [i for i, _ in reopened.store.keyword("zeppelin", 5)] == ["ghost"]
    for mode in MODES:  # searched meanwhile, the ghost is never returned
        hits = search(reopened, "zeppelin hangar", 5, settings.with_overrides(search_mode=mode))
        assert "ghost" not in {h.chunk.id for h in hits}
    assert reopened.store.check().only_in_word_index == ["ghost"]
    assert reopened.store.repair().consistent
    assert reopened.store.keyword("zeppelin", 5) == []


def test_question_text_never_reaches_fts5_as_syntax():
    index = LexicalIndex(None)
    index.add(
        [
            Chunk(
                id="a",
                text='He said "NEAR(x y)" AND left* the col:umn (sic).',
                source="/d/a.md",
                index=0,
            ),
            Chunk(id="b", text="太阳能板每年清洁两次。", source="/d/b.md", index=0),
            Chunk(id="c", text="Le café du théâtre ouvre à midi.", source="/d/c.md", index=0),
        ]
    )
    assert match_expression('"hotel" AND (london) NEAR* -x col:umn') == (
        '"hotel" OR "london" OR "near" OR "x" OR "col" OR "umn"'
    )
    for query in ['"unbalanced', "AND OR NOT", "*", "col:umn", "NEAR(", "^", "'", "-"]:
        index.search(query, 5)  # raises on a syntax error
    assert [i for i, _ in index.search("NEAR(x", 5)] == ["a"]
    assert [i for i, _ in index.search("清洁太阳能板", 5)] == ["b"]
    assert [i for i, _ in index.search("cafe theatre", 5)] == ["c"]
    # Stopwords are dropped, unless nothing else is left.
    assert match_expression("what is the hotel limit") == '"hotel" OR "limit"'
    assert [i for i, _ in index.search("the of and", 5)] == ["a"]


def test_source_patterns_select_by_glob_folder_or_path():
    sources = [
        "/home/ana/docs/manuals/router.pdf",
        "/home/ana/docs/manuals/notes.md",
        "/home/ana/docs/report.pdf",
        "/srv/manuals.pdf",
    ]
    assert filters.matching(sources, ["manuals/*.pdf"]) == [sources[0]]
    assert filters.matching(sources, ["manuals"]) == sources[:2]
    assert filters.matching(sources, ["*.pdf"]) == [sources[0], sources[2], sources[3]]
    assert filters.matching(sources, ["/home/ana/docs/report.pdf"]) == [sources[2]]
    assert filters.matching(sources, ["/home/ana/docs"]) == sources[:3]
    assert filters.matching(sources, ["report.pdf", "notes.md"]) == [sources[1], sources[2]]
    assert filters.matching(sources, ["nothing*"]) == []


def test_search_is_restricted_to_the_selected_sources(library, sample_docs):
    ingest(library, sample_docs)
    for mode in MODES:
        pdf_only = library.settings.with_overrides(search_mode=mode, sources=["*.pdf"])
        hits = search(library, "solar panels inverter hotel tea", 10, pdf_only)
        assert hits and {Path(h.chunk.source).name for h in hits} == {
            "harbor-street-solar-report.pdf"
        }
        tea = library.settings.with_overrides(search_mode=mode, sources=["notes"])
        assert {
            Path(h.chunk.source).name for h in search(library, "solar panels tea", 10, tea)
        } == {"tea-garden.txt"}
        none = library.settings.with_overrides(search_mode=mode, sources=["nothing/*.pdf"])
        assert search(library, "solar panels", 10, none) == []


def test_hybrid_finds_what_only_one_retriever_ranks_first(library, sample_docs):
    ingest(library, sample_docs)
    # A serial number: words vectors barely see, BM25 matches exactly.
    [top] = search(library, "HS-0522", 1)
    assert top.chunk.source.endswith(".pdf") and top.chunk.page == 2
    assert top.similarity is not None and -1.0 <= top.similarity <= 1.0
    # A paraphrase sharing no content word with its answer: vectors carry it.
    [top] = search(library, "Which bugs are let loose to eat the pests?", 1)
    assert "Ladybirds" in top.chunk.text


def test_diversification_keeps_repeated_passages_from_filling_the_results(library, tmp_path):
    docs = tmp_path / "dup"
    docs.mkdir()
    passage = (
        "The north gate of the depot opens at six in the morning and closes at ten "
        "at night; delivery drivers must sign in at the gatehouse."
    )
    for i in range(3):  # the same passage, copied into three files
        (docs / f"copy{i}.txt").write_text(passage + "\n")
    (docs / "other.txt").write_text(
        "Deliveries to the depot after ten at night use the "
        "south gate, where a guard checks the drivers' papers.\n"
    )
    ingest(library, docs)
    question = "When does the depot gate open and close for delivery drivers?"
    plain = search(library, question, 2, library.settings.with_overrides(mmr_lambda=1.0))
    assert [Path(h.chunk.source).name[:4] for h in plain] == ["copy", "copy"]
    diverse = search(library, question, 2, library.settings.with_overrides(mmr_lambda=0.8))
    assert [Path(h.chunk.source).name for h in diverse][1] == "other.txt"
    assert diverse[0].score >= diverse[1].score


def test_sample_questions_meet_the_quality_floor(library):
    ingest(library, ROOT / "data")
    questions = evaluation.load_questions(SAMPLE_QA)
    settings = evaluation.variants(library.settings, ["search_mode=vector", "search_mode=lexical"])
    hybrid, vector, lexical = (
        r.metrics() for r in evaluation.evaluate(library, questions, settings)
    )
    assert len(questions) >= 25
    assert hybrid["hit@3"] >= 0.96 and hybrid["hit@5"] == 1.0
    assert hybrid["mrr@10"] >= 0.9
    assert hybrid["mrr@10"] >= max(vector["mrr@10"], lexical["mrr@10"])


def test_qa_files_are_checked_line_by_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answers": ["a"]}\n{"question": "q2", "answers": "a"}\n')
    with pytest.raises(Exception, match=r"bad\.jsonl:2"):
        evaluation.load_questions(bad)
    q = evaluation.Question("q", ("260 euros",), "The limit is 260 euros in London.")
    assert evaluation.holds("the LIMIT is 260  euros in\nLondon. Paris too.", q)
    assert not evaluation.holds("260 euros in Paris.", q)  # the answer without its evidence
