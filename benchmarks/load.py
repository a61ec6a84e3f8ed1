"""Many people at once: simultaneous conversations through ``rag serve``, in one run.

    python -m benchmarks.load [--conversations 8] [--questions 2] [--tokens 48]
        [--replicas 1 2] [--llm embedded] [--llm openai:MODEL@URL ...] [--served]
        [--max-seconds 600]

Ingests the sample documents (data/) into a temporary index, then for each chat
model and each number of ``rag serve`` replicas (separate processes on the same
index, the conversations dealt out among them as a load balancer would) runs
``--conversations`` conversations at once, each asking ``--questions`` questions
one after another with its history, streamed. It prints side by side, per setup:
answers, errors (questions without an answer: refused, ended by an error event,
cut off, left after a failed turn, or still waiting at ``--max-seconds``), the
median and 95th percentile time to the first word of an answer (from the request;
a question waiting in line waits here), whole answers per minute over the run, and
the machine's load average (one minute) as the setup ended: on a shared machine the
other jobs' load moves every time.

``--app`` adds the app: the same conversations over its Socket.IO connection, as
its web page asks, with one and two ``chainlit run`` replicas (first word: the
first streamed piece of the answer, not the line that says its place in line).

``--served`` adds one more model: a ``rag serve`` of the embedded model used as the
``openai:`` server behind the replicas (the server a machine without llama.cpp has).
A llama.cpp server started with ``--parallel 4`` is measured with
``--llm openai:NAME@http://127.0.0.1:PORT/v1`` (its slots are read from ``/props``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What is the daily meal allowance when travelling?",
    "And how are hotel costs paid?",
    "How many vacation days does a new employee get?",
    "Who approves working from home?",
]
START_SECONDS = 300


@dataclass
class Tally:
    first_words: list[float] = field(default_factory=list)  # seconds, one per answer
    answers: int = 0
    errors: int = 0
    problems: set[str] = field(default_factory=set)  # what went wrong, said once each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """A ``rag serve`` process; returns it and its /v1 URL once it answers."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    wait_until_up(proc, f"{base}/models", log, "rag serve")
    return proc, base


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited: {log.read_text()}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{what} did not start within {START_SECONDS} s: {log.read_text()}")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=60)


async def ask(client: httpx.AsyncClient, base: str, messages: list[dict], tally: Tally) -> str:
    """One streamed question; the answer's text, or "" when it failed."""
    body = {"model": "rag-load", "stream": True, "messages": messages}
    sent, first, words = time.perf_counter(), None, []
    async with client.stream("POST", f"{base}/chat/completions", json=body) as response:
        if response.status_code != 200:
            tally.problems.add(f"{response.status_code}: {(await response.aread())[:300]!r}")
            return ""
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue  # a comment (its place in line), a blank line, [DONE]
            event = json.loads(line[len("data: ") :])
            if "error" in event:
                tally.problems.add(str(event["error"].get("message"))[:300])
                return ""
            delta = (event.get("choices") or [{}])[0].get("delta", {}).get("content")
            if delta:
                first = first if first is not None else time.perf_counter() - sent
                words.append(delta)
    if first is None:
        tally.problems.add("an answer with no text")
        return ""
    tally.first_words.append(first)
    tally.answers += 1
    return "".join(words)


async def conversation(n: int, base: str, questions: int, tally: Tally) -> None:
    messages: list[dict] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=30)) as client:
        for q in range(questions):
            messages.append({"role": "user", "content": QUESTIONS[(n + q) % len(QUESTIONS)]})
            answer = await ask(client, base, messages, tally)
            if not answer:
                return  # a failed turn ends the conversation
            messages.append({"role": "assistant", "content": answer})


async def app_conversation(n: int, url: str, questions: int, tally: Tally) -> None:
    """One conversation with the app over Socket.IO (engine.io v4 spoken by hand, as
    tests/support_security.py does): a new chat, then one question after another."""
    async with httpx.AsyncClient() as client:
        cookies = (await client.post(f"{url}/auth/header")).cookies
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    ws_url = url.replace("http", "ws", 1) + "/ws/socket.io/?EIO=4&transport=websocket"
    asked, sent, first = 0, 0.0, None
    async with connect(ws_url, origin=Origin(url), additional_headers={"Cookie": cookie}) as ws:
        await ws.recv()  # engine.io open
        await ws.send("40" + json.dumps({"sessionId": str(uuid.uuid4()), "clientType": "webapp"}))
        await ws.send('42["connection_successful"]')
        async for packet in ws:
            if packet == "2":
                await ws.send("3")  # engine.io ping
            if not isinstance(packet, str) or not packet.startswith("42"):
                continue
            event, *rest = json.loads(packet[2:])
            data = rest[0] if rest and isinstance(rest[0], dict) else {}
            waiting = str(data.get("token", "")).startswith("*Waiting for the model")
            if event == "stream_token" and first is None and asked and not waiting:
                first = time.perf_counter() - sent  # a word, not the place in line
            welcomed = event == "new_message" and data.get("output") and not asked
            ended = event == "update_message" and data.get("name") == "on_message"
            if ended:
                if first is None:
                    tally.problems.add("an app answer with no streamed text")
                    return
                tally.first_words.append(first)
                tally.answers += 1
            if (welcomed or ended) and asked < questions:
                question = QUESTIONS[(n + asked) % len(QUESTIONS)]
                message = {"id": str(uuid.uuid4()), "threadId": "", "type": "user_message"}
                message |= {"name": "User", "output": question, "createdAt": "2026-01-01T00:00:00Z"}
                payload = {"message": message, "fileReferences": []}
                await ws.send("42" + json.dumps(["client_message", payload]))
                asked, sent, first = asked + 1, time.perf_counter(), None
            elif ended:
                return


def start_app(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """``chainlit run app.py`` on a free port; returns it and its URL once it answers."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chainlit", "run", "app.py", "--headless", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(proc, url, log, "the app")
    return proc, url


async def drive(bases: list[str], args: argparse.Namespace, app: bool) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    talk = app_conversation if app else conversation
    talks = [
        asyncio.create_task(talk(n, bases[n % len(bases)], args.questions, tally))
        for n in range(args.conversations)
    ]
    done, late = await asyncio.wait(talks, timeout=args.max_seconds)
    for task in late:
        task.cancel()
    for task in done:
        if (exc := task.exception()) is not None:
            tally.problems.add(f"{type(exc).__name__}: {exc}")
    await asyncio.gather(*late, return_exceptions=True)
    tally.errors = args.conversations * args.questions - tally.answers  # whatever failed
    return tally, time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(
    spec: str, replicas: int, env: dict[str, str], work: Path, args: argparse.Namespace, app: bool
) -> tuple[str, set[str]]:
    procs: list[subprocess.Popen] = []
    start = start_app if app else start_serve
    try:
        bases = []
        for r in range(replicas):
            proc, base = start({**env, "RAG_LLM": spec}, work / f"server-{r}.log")
            procs.append(proc)
            bases.append(base)
        tally, seconds = asyncio.run(drive(bases, args, app))
    finally:
        stop(procs)
    p50 = statistics.median(tally.first_words) if tally.first_words else float("nan")
    p95 = percentile(tally.first_words, 0.95)
    per_minute = tally.answers / seconds * 60
    load = os.getloadavg()[0]  # what else ran meanwhile
    row = f"{tally.answers:>7} {tally.errors:>6} {p50:>14.2f} s {p95:>6.2f} s {per_minute:>12.1f}"
    row += f" {load:>5.1f}"
    return row, tally.problems


def served_model(env: dict[str, str], work: Path, procs: list[subprocess.Popen]) -> str:
    """A ``rag serve`` of the embedded model as an ``openai:`` server; its spec."""
    proc, base = start_serve({**env, "RAG_LLM": "embedded"}, work / "model-server.log")
    procs.append(proc)
    ids = [m["id"] for m in httpx.get(f"{base}/models").json()["data"]]
    own = next(i for i in ids if i != "local-rag-chat" and not i.startswith("rag-"))
    return f"openai:{own}@{base}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--questions", type=int, default=2, help="per conversation")
    parser.add_argument("--tokens", type=int, default=48, help="at most, per answer")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--llm", action="append", help="chat model spec (repeatable)")
    parser.add_argument("--served", action="store_true", help="add rag serve as openai: server")
    parser.add_argument("--app", action="store_true", help="also through the app's socket")
    parser.add_argument("--max-seconds", type=float, default=600, help="per setup")
    args = parser.parse_args()
    models = args.llm or ["embedded"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        index = work / "index"
        subprocess.run(
            [sys.executable, "-m", "ingest", "--index", str(index), "--collection", "load"]
            + [str(ROOT / "data" / name) for name in ("policies", "guides")],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        env = {
            "RAG_INDEX": str(index),
            "RAG_COLLECTION": "load",
            "RAG_MAX_ANSWER_TOKENS": str(args.tokens),
            "RAG_OFF_TOPIC": "general",  # every question reaches the model
            "RAG_TEMPERATURE": "0",
        }
        servers: list[subprocess.Popen] = []
        try:
            named = {spec: spec for spec in models}
            if args.served:
                named["openai: rag serve (embedded)"] = served_model(env, work, servers)
            print(
                f"Load through rag serve{' and the app' if args.app else ''}: "
                f"{args.conversations} conversations at once, "
                f"{args.questions} question(s) each, up to {args.tokens} tokens per answer, "
                f"{os.cpu_count()} CPU cores"
            )
            problems: set[str] = set()
            doors = [("", False)] + ([("app, ", True)] if args.app else [])
            setups = [
                (
                    f"{door}{label}, {replicas} replica{'s' if replicas > 1 else ''}",
                    spec,
                    replicas,
                    app,
                )
                for (door, app), (label, spec), replicas in itertools.product(
                    doors, named.items(), args.replicas
                )
            ]
            width = max(45, *(len(setup) for setup, *_ in setups))  # a long openai: URL
            print(f"{'setup':<{width}} answers errors first word p50    p95  answers/min  load")
            for setup, spec, replicas, app in setups:
                row, seen = measure(spec, replicas, env, work, args, app)
                problems |= seen
                print(f"{setup:<{width}} {row}", flush=True)
            for problem in sorted(problems):
                print(f"error: {problem}")
        finally:
            stop(servers)


if __name__ == "__main__":
    main()
