"""The chat pipeline's own decisions, without a model: follow-ups and history."""

from rag.answers.answering import recent, search_query

HISTORY = [
    {"role": "user", "content": "How do I install it on Linux?"},
    {"role": "assistant", "content": "Run make run."},
]


def test_follow_ups_are_searched_with_the_previous_question():
    assert (
        search_query("And on Windows?", HISTORY) == "How do I install it on Linux? And on Windows?"
    )
    assert search_query("What does it cost?", HISTORY).startswith("How do I install it on Linux?")


def test_standalone_questions_are_searched_alone():
    assert search_query("What is the daily meal allowance?", HISTORY) == (
        "What is the daily meal allowance?"
    )
    assert search_query("And on Windows?", []) == "And on Windows?"


def test_history_is_bounded_to_whole_exchanges():
    long = HISTORY * 5
    assert recent(long, 2) == long[-4:]
    assert recent(long, 0) == []


def test_the_prompt_fits_the_budget_by_dropping_the_lowest_ranked_passages():
    from rag.answers.prompts import build_messages, fit_to_budget
    from rag.library.chunks import Chunk, Hit

    hits = [
        Hit(
            Chunk(id=str(i), text=f"passage {i} " + "word " * 50, source=f"/d/{i}.md", index=0),
            score=1 - i / 10,
            rank=i + 1,
        )
        for i in range(4)
    ]
    count = lambda text: len(text.split())  # noqa: E731 - one word, one token
    whole = sum(count(m["content"]) + 8 for m in build_messages("q?", hits))
    messages, kept = fit_to_budget("q?", hits, [], whole - 30, count)
    assert [h.rank for h in kept] == [1, 2, 3]
    assert sum(count(m["content"]) + 8 for m in messages) <= whole - 30
    assert "passage 3" not in messages[-1]["content"]
