"""Nothing blocks the event loop, the first answer after start included (#25).

A server whose event loop is busy (a model loading or warming up on it, or native
code that holds the GIL in a thread beside it) answers nothing else meanwhile, and
its answer's chunks leave in one burst at the end. So while the FIRST answer of a
fresh ``rag serve`` and a fresh app is on its way, a burst of cheap requests is sent
one after another; each must be answered, all of them before the answer's first
text arrives (ordering, not timing: the answer needs seconds of prompt evaluation
on this machine, a free loop answers a cheap request in a few milliseconds, a
blocked one only between slices of the model's work). The answer's text must then
arrive spread over several reads, not all at once.

Real processes, the real embedding model and the real embedded chat model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from servers import App, start_rag_server
from support_security import login_cookie, socketio_chat

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
QUESTION = "What is the daily meal allowance when travelling?"
PINGS = 80  # cheap requests, one after another, while the first answer is prepared


@pytest.fixture(scope="module")
def index(tmp_path_factory, processes) -> Path:
    index = tmp_path_factory.mktemp("loop") / "index"
    subprocess.run(
        [sys.executable, "-m", "ingest", "--index", str(index), "--collection", "loop"]
        + [str(DATA / name) for name in ("policies", "guides")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return index


class Timeline:
    """What happened, in the order it happened: a list appended to by two threads."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()

    def add(self, event: str) -> None:
        with self._lock:
            self.events.append(event)

    def pings_before(self, event: str) -> int:
        return self.events[: self.events.index(event)].count("ping")


def ping_burst(
    timeline: Timeline, url: str, started: threading.Event, headers: dict | None = None
) -> threading.Thread:
    def run() -> None:
        with httpx.Client(headers=headers, timeout=120) as client:  # one kept-alive connection
            started.wait(timeout=600)
            for _ in range(PINGS):
                reply = client.get(url)
                assert reply.status_code == 200, reply.text
                timeline.add("ping")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _has_text(event: str) -> bool:
    data = event.removeprefix("data: ")
    if not data.startswith("{"):
        return False
    choices = json.loads(data).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


def test_rag_serve_answers_cheap_requests_during_its_first_answer(index):
    proc, base = start_rag_server(
        {"RAG_INDEX": str(index), "RAG_COLLECTION": "loop", "RAG_MAX_ANSWER_TOKENS": "48"}
    )
    try:
        timeline, sent = Timeline(), threading.Event()
        pings = ping_burst(timeline, f"{base}/models", sent)
        body = {
            "model": "rag-loop",
            "stream": True,
            "messages": [{"role": "user", "content": QUESTION}],
        }
        reads = 0
        with httpx.Client(timeout=300) as client:
            request = client.build_request("POST", f"{base}/chat/completions", json=body)
            sent.set()  # the burst starts as the question leaves
            response = client.send(request, stream=True)
            buffer = ""
            for raw in response.iter_text():
                buffer += raw
                *complete, buffer = buffer.split("\n\n")
                if any(_has_text(event) for event in complete):
                    timeline.add("text")
                    reads += 1
            response.close()
        timeline.add("end")
        pings.join(timeout=300)
        assert timeline.events.count("ping") == PINGS, timeline.events
        assert timeline.pings_before("text") == PINGS, timeline.events
        assert reads >= 3, timeline.events  # streamed, not one burst at the end
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_app_answers_cheap_requests_during_its_first_answer(index):
    app = App(index, env={"RAG_COLLECTION": "loop", "RAG_MAX_ANSWER_TOKENS": "48"})
    try:
        cookie = login_cookie(app.url)
        timeline, asked = Timeline(), threading.Event()
        settings = f"{app.url}/project/settings"
        pings = ping_burst(timeline, settings, asked, headers={"Cookie": cookie})

        def seen(event: str, data: object) -> None:
            if event == "stream_token":
                timeline.add("text")

        events = socketio_chat(app.url, cookie, QUESTION, before_asking=asked.set, on_event=seen)
        timeline.add("end")
        pings.join(timeout=300)
        tokens = [e for e, _ in events if e == "stream_token"]
        assert timeline.events.count("ping") == PINGS, timeline.events
        assert timeline.pings_before("text") == PINGS, json.dumps(timeline.events)
        assert len(tokens) >= 3, events
    finally:
        app.close()
