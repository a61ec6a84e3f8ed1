"""The channel to the browser that writes a chat's answers (#23): only the chat's own user
may say hello on its link or feed its answer, whatever ids they learn."""

from __future__ import annotations

import asyncio

import pytest

from rag.models.browser_jobs import Links, NotFound


async def _quiet(message: dict) -> None:
    pass


def test_another_user_cannot_feed_or_claim_a_chats_answer():
    async def attack() -> None:
        links = Links()
        alice = links.open("alice", _quiet)
        job = alice.open_job()
        with pytest.raises(NotFound):
            links.post(job.id, "bob", {"tokens": [1, 2, 3]})
        with pytest.raises(NotFound):
            links.post(job.id, None, {"tokens": [1, 2, 3]})  # not logged in
        with pytest.raises(NotFound):
            links.hello(alice.token, "bob", webgpu=True, adapter="bob's GPU")
        assert job.inbox.empty() and not alice.ready
        links.post(job.id, "alice", {"tokens": [7]})
        assert job.inbox.get_nowait() == {"tokens": [7]}

    asyncio.run(attack())


def test_a_finished_answer_takes_no_more_tokens_and_ids_are_not_guessable():
    async def run() -> None:
        links = Links()
        link = links.open("alice", _quiet)
        first, second = link.open_job(), link.open_job()
        link.close_job(first)
        with pytest.raises(NotFound):
            links.post(first.id, "alice", {"tokens": [1]})  # the page then stops writing
        assert len(first.id) >= 32 and first.id != second.id and len(link.token) >= 32

    asyncio.run(run())


def test_a_closed_chat_ends_the_answer_it_was_waiting_for():
    async def run() -> None:
        links = Links()
        link = links.open("alice", _quiet)
        job = link.open_job()
        links.close(link)
        assert "error" in job.inbox.get_nowait() and link not in links

    asyncio.run(run())
