"""How many answers a model server gives at once, read from what it says: the default of
``RAG_LLM_CONCURRENCY`` (rag/models/openai_compat.py ``slots_in``). The reply parsed here
is a real llama.cpp ``llama-server --parallel 4`` reply, recorded once (where from: its
``recorded_from``); llama-server is not installed where the suite runs, so the request
itself is covered by tests/web/test_parallel_answers.py against a loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.models.openai_compat import slots_in

RECORDED = Path(__file__).resolve().parent.parent / "recorded" / "llama-server-props.json"


def test_the_slots_of_a_real_llama_server_reply_are_read():
    reply = json.loads(RECORDED.read_text())["reply"]
    assert slots_in(reply) == 4  # it was started with --parallel 4


@pytest.mark.parametrize(
    "reply",
    [
        {},  # a server that says nothing of slots
        {"total_slots": 0},
        {"total_slots": -1},
        {"total_slots": True},  # not a count
        {"total_slots": "4"},
        {"default_generation_settings": {"total_slots": 4}},  # only the top level counts
        ["total_slots", 4],
        None,
    ],
)
def test_a_reply_without_a_slot_count_gives_none(reply):
    assert slots_in(reply) is None
