"""`rag chat` and `rag chats` as a person runs them, and the same answer from every door:
`rag ask`, `rag compare` (and, in tests/browser/test_browser_history.py, the app)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servers import printed_sources, rag

pytestmark = pytest.mark.integration  # every test runs the `rag` command as a process

QUESTION = "What is the daily meal allowance?"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    index = tmp_path_factory.mktemp("chatcli") / "index"
    done = rag("ingest", str(Path(__file__).resolve().parents[2] / "data"), index=index)
    assert done.returncode == 0, done.stderr
    return index


ZERO = {"RAG_TEMPERATURE": "0", "RAG_MAX_ANSWER_TOKENS": "60"}


def test_a_terminal_chat_is_stored_resumed_exported_and_deleted(index, tmp_path, embedded_model):
    notes = tmp_path / "zephyr.md"
    notes.write_text("# Zephyr\n\nThe Zephyr-9 survey drone flies for 47 minutes on one battery.")
    done = rag(
        "chat",
        index=index,
        env=ZERO,
        stdin=f"How do I install Local RAG Chat on Linux?\n/attach {notes}\n",
    )
    assert done.returncode == 0, done.stderr
    chat_id = re.search(r"rag chat --resume (\S+)", done.stdout).group(1)
    assert "Added **zephyr.md** to this chat (1 passage)" in done.stdout

    again = rag(
        "chat",
        "--resume",
        chat_id,
        index=index,
        env=ZERO,
        stdin="And on Windows?\nHow long does the Zephyr-9 drone fly on one battery?\n",
    )
    assert again.returncode == 0, again.stderr
    assert "(1 earlier exchange(s))" in again.stdout
    assert "zephyr.md" in again.stdout.split("you>")[-2]  # the resumed chat's file is searched

    listed = rag("chats", "list", index=index)
    assert chat_id in listed.stdout
    exported = rag("chats", "export", chat_id, index=index).stdout
    for asked in (
        "How do I install Local RAG Chat on Linux?",
        "And on Windows?",
        "How long does the Zephyr-9 drone fly on one battery?",
    ):
        assert f"## {asked}" in exported
    assert "zephyr.md" in exported

    files = index / "chats" / "files" / chat_id
    assert (files / "files" / "zephyr.md").exists()
    assert rag("chats", "delete", chat_id, index=index).returncode == 0
    assert not files.exists()
    assert chat_id not in rag("chats", "list", index=index).stdout
    gone = rag("chat", "--resume", chat_id, index=index)
    assert gone.returncode == 2 and "There is no chat" in gone.stderr


def test_another_user_does_not_see_the_chat(index, embedded_model):
    done = rag("chat", "--user", "ann", index=index, env=ZERO, stdin=f"{QUESTION}\n")
    chat_id = re.search(r"rag chat --resume (\S+)", done.stdout).group(1)
    assert chat_id in rag("chats", "list", "--user", "ann", index=index).stdout
    assert chat_id not in rag("chats", "list", "--user", "bob", index=index).stdout
    refused = rag("chat", "--user", "bob", "--resume", chat_id, index=index)
    assert refused.returncode == 2 and "There is no chat" in refused.stderr


def sources_of_ask(stdout: str) -> list[str]:
    return re.findall(r"^  (\[\d+\] .+?)  \(", stdout, re.MULTILINE)


def test_ask_and_compare_answer_with_the_same_sources(index, embedded_model):
    asked = rag("ask", QUESTION, index=index, env=ZERO)
    compared = rag("compare", "--llm", "embedded", QUESTION, index=index, env=ZERO)
    assert asked.returncode == 0 and compared.returncode == 0, asked.stderr + compared.stderr
    listed = re.search(r"(?:sources|retrieved): (.+)", compared.stdout).group(1).split("; ")
    assert sources_of_ask(asked.stdout) == listed and listed
    printed_sources(asked.stdout)  # which of them are listed follows the answer's citations


def test_compare_declines_an_off_topic_question_in_every_model(index, embedded_model):
    done = rag(
        "compare",
        "--llm",
        "embedded",
        "Who won the 1998 football World Cup?",
        index=index,
        env=ZERO,
    )
    assert done.returncode == 0, done.stderr
    row = done.stdout.splitlines()[1]
    assert re.search(r" 40  Who won", row), row  # len("I could not find this in your documents.")
