"""Generation in parallel where the model allows it, and a visible line (#25).

``rag serve`` in front of a real HTTP model server on loopback (``HeldModel``) that
begins each answer and holds the rest until the test lets it go: so the test sees
how many answers the server is asked for at once. With room for N, N run at once and
a question beyond them hears its place in line (an SSE comment OpenAI clients skip);
one that waits longer than RAG_QUEUE_TIMEOUT_S gets a clear error instead of hanging.
No clocks: every wait is for a condition, under a deadline.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from servers import App, HeldModel, start_rag_server
from support_security import login_cookie, socketio_chat

QUESTION = [{"role": "user", "content": "Tell me about the tea garden."}]


@pytest.fixture
def held(processes):
    model = HeldModel(slots=3)  # says it answers three at once
    yield model
    model.close()


def serve(tmp_path, held: HeldModel, **env: str):
    return start_rag_server(
        {"RAG_INDEX": str(tmp_path / "index"), "RAG_LLM": f"openai:m@{held.base}", **env}
    )


class Asking(threading.Thread):
    """One streamed question; keeps the stream's lines as they come."""

    def __init__(self, base: str, model: str) -> None:
        super().__init__(daemon=True)
        self.base, self.model = base, model
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        body = {"model": self.model, "stream": True, "messages": QUESTION}
        with httpx.stream("POST", f"{self.base}/chat/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                if line:
                    self.lines.append(line)  # as it comes

    def places(self) -> list[int]:
        return [int(line.rsplit(" ", 1)[1]) for line in self.lines if line.startswith(": queued")]

    def text(self) -> str:
        found = []
        for line in self.lines:
            if line.startswith("data: {"):
                choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
                found.append(choices[0].get("delta", {}).get("content") or "")
        return "".join(found)


def until(condition, what: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"not within {deadline} s: {what}"
        time.sleep(0.02)


def model_id(base: str) -> str:
    return next(m["id"] for m in httpx.get(f"{base}/models").json()["data"] if m["id"][:2] == "m-")


def test_as_many_answers_at_once_as_the_server_says_the_rest_hear_their_place(tmp_path, held):
    proc, base = serve(tmp_path, held)  # no RAG_LLM_CONCURRENCY: the server's 3
    try:
        own = model_id(base)
        asking = []
        for _ in range(5):
            asking.append(Asking(base, own))
            until(lambda: held.active + sum(bool(a.places()) for a in asking) == len(asking), "in")
        assert held.active == 3
        assert sorted(a.places()[0] for a in asking if a.places()) == [1, 2]
        held.release.set()
        for a in asking:
            a.join(timeout=60)
        assert [a.text() for a in asking] == ["Held answer."] * 5
        assert held.most == 3
        # The official client reads a stream that waited in line like any other.
        held.release.clear()
        fillers = [Asking(base, own) for _ in range(3)]
        until(lambda: held.active == 3, "three answers begun")
        answered = threading.Event()  # headers came: with no room, only a stream in line has them
        hooks = {"response": [lambda response: answered.set()]}
        client = openai.OpenAI(
            base_url=base,
            api_key="not-needed",
            max_retries=0,
            http_client=httpx.Client(event_hooks=hooks, timeout=120),
        )
        texts: list[str] = []

        def official() -> None:
            stream = client.chat.completions.create(model=own, messages=QUESTION, stream=True)
            texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))

        reader = threading.Thread(target=official, daemon=True)
        reader.start()
        until(answered.is_set, "the official client's stream begun")
        assert held.active == 3  # so it is waiting in line
        held.release.set()
        reader.join(timeout=60)
        assert texts == ["Held answer."]
        for a in fillers:
            a.join(timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_setting_wins_and_a_long_wait_ends_in_a_clear_error(tmp_path, held):
    proc, base = serve(tmp_path, held, RAG_LLM_CONCURRENCY="1", RAG_QUEUE_TIMEOUT_S="0.5")
    try:
        own = model_id(base)
        first = Asking(base, own)
        until(lambda: held.active == 1, "the first answer begun")
        second = Asking(base, own)  # streamed: told its place, then that the model is busy
        second.join(timeout=60)
        assert second.places() == [1]
        error = json.loads(second.lines[-1][len("data: ") :])["error"]
        assert "busy" in error["message"] and "RAG_QUEUE_TIMEOUT_S" in error["message"]
        whole = httpx.post(
            f"{base}/chat/completions", json={"model": own, "messages": QUESTION}, timeout=60
        )
        assert whole.status_code == 503 and "busy" in whole.json()["error"]["message"]
        assert held.most == 1
        held.release.set()
        first.join(timeout=60)
        assert first.text() == "Held answer."
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_app_shows_a_waiting_question_its_place_in_line(tmp_path, held):
    app = App(
        tmp_path / "index",
        env={
            "RAG_LLM": f"openai:m@{held.base}",
            "RAG_LLM_CONCURRENCY": "1",
            "RAG_OFF_TOPIC": "general",  # an empty library: the model answers generally
        },
    )
    try:
        cookie = login_cookie(app.url)
        chats: dict[str, list] = {}

        def chat(name: str, **kwargs) -> threading.Thread:
            def run() -> None:
                chats[name] = socketio_chat(app.url, cookie, f"{name} question?", **kwargs)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return thread

        first = chat("First")
        until(lambda: held.active == 1, "the first answer begun")
        told = threading.Event()

        def seen(event: str, data: object) -> None:
            if event == "stream_token" and "place 1 in line" in json.dumps(data):
                told.set()

        second = chat("Second", on_event=seen)
        until(told.is_set, "the second question told its place")
        assert held.active == 1
        held.release.set()
        first.join(timeout=120)
        second.join(timeout=120)
        shown = [
            d["output"]
            for e, d in chats["Second"]
            if e in ("new_message", "update_message") and "Held answer." in d.get("output", "")
        ]
        assert shown and "in line" not in shown[-1]  # the finished answer drops the line
        assert held.most == 1
    finally:
        app.close()
