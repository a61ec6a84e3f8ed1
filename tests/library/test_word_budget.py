"""BM25 within a budget of rows: a question's common words cannot make it cost the library."""

from __future__ import annotations

from rag.library import word_index
from rag.library.chunks import Chunk
from rag.library.word_index import LexicalIndex


def _index(rows: int) -> LexicalIndex:
    index = LexicalIndex(None)
    chunks = [
        Chunk(id=f"c{i}", text=f"the common ledger entry {i}", source=f"/d/{i}.md", index=0)
        for i in range(rows)
    ]
    chunks.append(
        Chunk(id="rare", text="the common ledger names a quokka", source="/d/q.md", index=0)
    )
    index.add(chunks)
    return index


def test_common_words_are_left_out_of_the_match_beyond_the_budget(monkeypatch):
    monkeypatch.setattr(word_index, "MATCH_BUDGET", 10)
    index = _index(40)
    expression, over = index._expression("which common ledger names a quokka")
    assert expression == '"names" OR "quokka"' and not over  # 1 row each; the rest 41
    assert index.search("which common ledger names a quokka", 3)[0][0] == "rare"
    # The blend's scores for given ids use the same words: "rare" scores, the rest do not.
    assert set(index.scores("common ledger quokka", ["c1", "rare"])) == {"rare"}


def test_a_question_of_common_words_only_scores_the_budgets_rows(monkeypatch):
    monkeypatch.setattr(word_index, "MATCH_BUDGET", 10)
    index = _index(40)
    expression, over = index._expression("common ledger")
    assert expression in ('"common"', '"ledger"') and over  # the rarest, still over
    assert len(index.search("common ledger", 50)) == 10


def test_under_the_budget_every_word_is_matched():
    index = _index(40)
    assert index._expression("which common ledger names a quokka") == (
        '"common" OR "ledger" OR "names" OR "quokka"',
        False,
    )
