"""The chat pipeline's own decisions, without a model: follow-ups and history."""

from rag.chat import recent, search_query

HISTORY = [
    {"role": "user", "content": "How do I install it on Linux?"},
    {"role": "assistant", "content": "Run make run."},
]


def test_follow_ups_are_searched_with_the_previous_question():
    assert search_query("And on Windows?", HISTORY) == "How do I install it on Linux? And on Windows?"
    assert search_query("What does it cost?", HISTORY).startswith("How do I install it on Linux?")


def test_standalone_questions_are_searched_alone():
    assert search_query("What is the daily meal allowance?", HISTORY) == (
        "What is the daily meal allowance?")
    assert search_query("And on Windows?", []) == "And on Windows?"


def test_history_is_bounded_to_whole_exchanges():
    long = HISTORY * 5
    assert recent(long, 2) == long[-4:]
    assert recent(long, 0) == []
