"""Start-up cost: cold commands, the app's first answer and ingest speed, per embedder, in one run.

    python -m benchmarks.startup [--repeat 3] [--docs 60] [--no-app] [--embedder KIND]

Ingests the sample documents (data/) into a temporary index, then prints side
by side: wall time and peak memory (the child's ru_maxrss) of a cold
``rag query`` process with each embedder and of ``rag sources``; the app's time
from ``chainlit run`` to its first finished answer, driven in headless Chromium;
and ingest speed in chunks per second with each embedder on the same chunks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from benchmarks.corpus import write_corpus
from rag.config import Settings
from rag.embeddings.embedder import EMBEDDERS, create_embedder
from rag.ingest.pipeline import Ingestor, discover
from rag.library.live import open_library

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is the daily meal allowance?"
COMPARED = ["onnx", "sentence-transformers"]  # the default against the reference
ANSWER = '[data-step-type="assistant_message"]'
FINISHED = ("Sources:", "Retrieved passages", "could not find this in your documents")


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system: what the work costs, whatever else the machine runs
    peak_mb: float
    returncode: int
    output: str


def run_cold(args: list[str], env: dict[str, str]) -> Run:
    """One fresh process: its wall time and its own peak resident memory."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        # ru_maxrss is in kilobytes on Linux (bytes on macOS).
        scale = 1024 * 1024 if sys.platform == "darwin" else 1024
        cpu = usage.ru_utime + usage.ru_stime
        return Run(seconds, cpu, usage.ru_maxrss / scale, proc.returncode, out.read())


def measure(label: str, args: list[str], env: dict[str, str], repeat: int) -> str:
    runs = [run_cold(args, env) for _ in range(repeat)]
    failed = [r for r in runs if r.returncode != 0]
    if failed:
        raise SystemExit(f"{label} failed:\n{failed[0].output}")
    wall = statistics.median(r.seconds for r in runs)
    cpu = statistics.median(r.cpu_seconds for r in runs)
    peak = max(r.peak_mb for r in runs)
    return f"{label:36} {wall:8.2f} s {cpu:8.2f} s {peak:9.0f} MB"


def start_app(port: int, env: dict[str, str], log: IO[str]) -> subprocess.Popen:
    """``chainlit run app.py`` on ``port``, its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "chainlit", "run", "app.py", "--headless", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def app_first_answer(env: dict[str, str], timeout: float = 600) -> str:
    """Start the app, ask one question in headless Chromium, time the answer from the start."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryFile("w+") as log:
        port = _free_port()
        started = time.perf_counter()
        server = start_app(port, env, log)
        try:
            up = _wait_until_serving(f"http://127.0.0.1:{port}", server, log, started, timeout)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
                )
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}")
                page.wait_for_selector(ANSWER, timeout=timeout * 1000)  # the welcome
                welcome = time.perf_counter() - started
                page.fill("#chat-input", QUESTION)
                page.keyboard.press("Enter")
                page.wait_for_function(
                    "([sel, ends]) => { const a = document.querySelectorAll(sel);"
                    " const last = a.length >= 2 ? a[a.length - 1].innerText : '';"
                    " return ends.some(e => last.includes(e)); }",
                    arg=[ANSWER, list(FINISHED)],
                    timeout=timeout * 1000,
                )
                answered = time.perf_counter() - started
                browser.close()
        finally:
            server.terminate()
            _, _, usage = os.wait4(server.pid, 0)
            server.returncode = 0
    cpu = usage.ru_utime + usage.ru_stime
    return (
        f"serving {up:6.2f} s   welcome {welcome:6.2f} s   first answer {answered:6.2f} s"
        f"   cpu {cpu:6.2f} s   peak {usage.ru_maxrss / 1024:5.0f} MB"
    )


def _wait_until_serving(
    url: str, server: subprocess.Popen, log: IO[str], started: float, timeout: float
) -> float:
    """Seconds from ``started`` until ``url`` answers 200."""
    import httpx

    while time.perf_counter() < started + timeout:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the app exited:\n{log.read()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # between polls of the condition
    log.seek(0)
    raise SystemExit(f"the app did not serve {url} in time:\n{log.read()}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ingest_sample_data(env: dict[str, str]) -> None:
    """``rag ingest data/`` into the env's RAG_INDEX, as a user would; exits if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest", str(ROOT / "data")],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"ingesting data/ failed:\n{done.stdout}{done.stderr}")


def ingest_speed(folder: Path, docs: int, kinds: list[str] | None = None) -> list[str]:
    """Chunks per second of the whole ingest with each embedder (or ``kinds``), on the
    same corpus."""
    corpus = write_corpus(folder / "corpus", docs)
    lines = []
    for kind in kinds or sorted(EMBEDDERS, key=lambda k: (k != "onnx", k)):
        settings = Settings(index=folder / f"index-{kind}", collection="bench", embedder=kind)
        embedder = create_embedder(settings)
        embedder.prepare()
        embedder.embed(["warm up the model before timing anything"])  # loading is timed above
        library = open_library(settings, embedder)
        started = time.perf_counter()
        summary = Ingestor(library).run(discover([corpus]), progress=False)
        seconds = time.perf_counter() - started
        rate = summary.chunks_written / seconds
        lines.append(
            f"ingest with {kind:31} {rate:8.1f} chunks/s ({summary.chunks_written} "
            f"chunks in {seconds:.1f} s)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per command (median)")
    parser.add_argument("--docs", type=int, default=60, help="documents for the ingest speed")
    parser.add_argument("--no-app", action="store_true", help="skip the app's first answer")
    parser.add_argument(
        "--embedder",
        action="append",
        choices=sorted(EMBEDDERS),
        help="measure only this embedder (repeatable; default: onnx against the reference)",
    )
    args = parser.parse_args()
    compared = args.embedder or COMPARED

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        env = {
            **os.environ,
            "RAG_INDEX": str(index),
            "RAG_TEMPERATURE": "0",
            "RAG_MAX_ANSWER_TOKENS": "64",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        for kind in compared:  # builds the ONNX export if missing: not part of any figure
            create_embedder(Settings(embedder=kind)).prepare()
        ingest_sample_data(env)
        chunks = run_cold(["-m", "rag.cli", "sources"], env).output.strip().splitlines()[-1]
        print(f"library: {chunks}; {os.cpu_count()} cores; median of {args.repeat} cold runs")
        print(f"{'':36} {'wall':>10} {'cpu':>10} {'peak memory':>12}")
        for kind in compared:
            print(
                measure(
                    f"rag query ({kind})",
                    ["-m", "rag.cli", "query", QUESTION],
                    {**env, "RAG_EMBEDDER": kind},
                    args.repeat,
                ),
                flush=True,
            )
        print(measure("rag sources", ["-m", "rag.cli", "sources"], env, args.repeat), flush=True)
        if not args.no_app:
            for kind in compared:
                print(
                    f"app ({kind}): " + app_first_answer({**env, "RAG_EMBEDDER": kind}), flush=True
                )
        for line in ingest_speed(Path(tmp) / "ingest", args.docs, args.embedder):
            print(line, flush=True)


if __name__ == "__main__":
    main()
