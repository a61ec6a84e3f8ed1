"""The library at scale, embedded Chroma against a Chroma server, side by side in one run.

    python -m benchmarks.scale [--sizes 1000,10000] [--large] [--huge] [--repeat 3]
                               [--questions N] [--stores embedded,server]

For each size (``--large`` adds 100k chunks, ``--huge`` 100k, 250k, 500k and a million:
hours, not in CI) and each store it grows one library, size after size (each size adds
to the one before, and its row is printed as soon as it is measured, so a run stopped
on the way to a million still reports the sizes it reached):
the hand-written articles of benchmarks/encyclopedia, really embedded, plus filler
chunks of realistic text (sentences of the Python documentation) with random unit
vectors, as benchmarks/search_latency does (HNSW's cost depends on the number and
dimension of vectors, not their meaning; random vectors are its harder case).
Filler documents hold 20 chunks each and go through the store's ``write``, so the
ingest rate is the store's (chunk store, documents table, word index, under the
writer lock), without the embedding model, over the stretch since the previous size.

A fresh query process then opens the library and runs the article questions through
the full hybrid ``search`` (a real query embedding each time, with the configured
embedder, ONNX by default) and reports: time to open the library (the model already
loaded), search median and p95, and its peak memory. Peak memory is the process's own
high-water mark (``VmHWM``): ``getrusage``'s maximum, used before, survives ``exec`` and
so reported the builder's memory (3 GB at 100k chunks) as the query process's.
Disk size counts Chroma's files and the local word index. "load" is the machine's load
average (one minute) when the row was measured: on a shared machine it says how much
of a wall time is the machine's. A store whose build fails prints why (with the end
of the server's log) and the run goes on with the other.

"median ms" is a question's search as the app asked it before access rules (the shared
library brought up to date, then searched); "limited ms" the same search asked as a
user with access limits (#24): the library made a team library among others the user
may not read, and each question first reads the access record and takes the readable
libraries from the shelf (rag/library/shelf.py), as every question of the app, the CLI
and ``rag serve`` now does. The two are timed in turns, question by question, so both
see the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks import evalset
from benchmarks.search_latency import _sentences, write_filler
from rag.config import Settings
from rag.ingest.pipeline import Ingestor, discover
from rag.library.live import Library

FILLER_PER_DOCUMENT = 20
# ``--huge``: the sizes on the way to a million, each reported as the library grows.
HUGE = [100_000, 250_000, 500_000, 1_000_000]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    """``chroma run`` on a free port, for the length of one measurement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
        self.log = path.with_suffix(".log")
        path.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _disk_mb(*folders: Path) -> float:
    total = 0
    for folder in folders:
        for f in folder.rglob("*"):
            with contextlib.suppress(OSError):  # a server's file can go meanwhile
                total += f.stat().st_size if f.is_file() else 0
    return total / 1e6


class Grown:
    """One store's library, grown size by size through a run (each size adds to the last,
    so a million-chunk run writes a million chunks once and reports every size on the way)."""

    def __init__(self, folder: Path, backend: str) -> None:
        self.backend = backend
        self.index = folder / "index"
        self.server = ChromaServer(folder / "server") if backend == "server" else None
        url = self.server.url if self.server else None
        self.env = {
            "RAG_INDEX": str(self.index),
            "RAG_COLLECTION": "scale",
            **({"RAG_CHROMA_URL": url} if url else {}),
        }
        self.settings = Settings(index=self.index, collection="scale", chroma_url=url)
        self.filler = 0  # filler chunks written so far: the next stretch's ids follow

    def grow(self, chunks: int, sentences: list[str]) -> float:
        """Fill the library up to ``chunks``; returns the store's write rate in chunks/s
        over this stretch (the chunks added since the last size)."""
        from rag.library.search import open_library

        library = open_library(self.settings)
        Ingestor(library).run(discover([evalset.ARTICLES]), progress=False)
        dim = len(library.embedder.embed(["dimension"])[0])
        store = library.store
        todo = max(chunks - store.count(), 0)
        started = time.perf_counter()
        try:
            write_filler(store, sentences, todo, dim, start=self.filler)
        finally:
            store.close()
        self.filler += todo
        seconds = time.perf_counter() - started
        return todo / seconds if seconds else 0.0

    def disk_mb(self) -> float:
        return _disk_mb(self.index, *([self.server.path] if self.server else []))

    def why(self) -> str:
        """What the server said last, for a build that failed."""
        if not self.server:
            return ""
        alive = "running" if self.server.proc.poll() is None else "exited"
        tail = self.server.log.read_text(errors="replace").splitlines()[-20:]
        return f"chroma run {alive} ({self.server.proc.returncode}); its log ends:\n" + "\n".join(
            tail
        )

    def close(self) -> None:
        if self.server:
            self.server.stop()


def _peak_mb() -> float:
    """This process's peak resident memory, not inherited from the process that forked it."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):  # not Linux: the maximum getrusage knows
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _query_child(repeat: int, limit: int | None) -> None:
    """Run in a fresh process: open, search, report as one JSON line."""
    from rag.embeddings.embedder import create_embedder
    from rag.library import evaluation
    from rag.library.freshness import LiveLibrary
    from rag.library.search import open_library, search

    settings = Settings()
    embedder = create_embedder(settings)
    embedder.embed(["warm up"])
    started = time.perf_counter()
    library = open_library(settings, embedder)
    open_ms = (time.perf_counter() - started) * 1000
    questions = evaluation.load_questions(evalset.ARTICLE_QA)[:limit]
    limited = _limited_search(settings, library)
    live = LiveLibrary(library)
    for q in questions[:5]:
        search(live.current(), q.question, settings.top_k)
        limited(q.question, settings.top_k)
    times, limited_times, cpu = [], [], []
    for _ in range(repeat):
        for q in questions:
            t, c = time.perf_counter(), time.process_time()
            search(live.current(), q.question, settings.top_k)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            t = time.perf_counter()
            limited(q.question, settings.top_k)
            limited_times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(
        json.dumps(
            {
                "open_ms": open_ms,
                "median_ms": statistics.median(times),
                "limited_ms": statistics.median(limited_times),
                "p95_ms": times[int(0.95 * (len(times) - 1))],
                # CPU time follows the work, wall time also the machine's other load.
                "cpu_median_ms": statistics.median(cpu),
                "peak_mb": _peak_mb(),
                "chunks": library.store.count(),
            }
        )
    )


def _limited_search(settings: Settings, library: Library) -> Callable[[str, int], list]:
    """Search as a user who may read this library and not two others, through the
    access record and the shelf, as a question of the app does."""
    from rag.library.access import Access, Reader, access_path
    from rag.library.search import search
    from rag.library.shelf import Shelf

    access = Access(access_path(settings))
    for name in (settings.collection, "contracts", "payroll"):
        access.create(name)
    access.join("reader", "staff")
    access.grant(settings.collection, "@staff", "read")
    access.grant("payroll", "someone-else", "read")
    shelf = Shelf(settings, {settings.collection: library})
    reader = Reader("reader")

    def limited(question: str, k: int) -> list:
        return [h for lib in shelf.readable(reader) for h in search(lib, question, k)]

    return limited


def _query(env: dict[str, str], repeat: int, limit: int | None) -> dict:
    extra = ["--questions", str(limit)] if limit else []
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.scale",
            "--query-child",
            "--repeat",
            str(repeat),
            *extra,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    grown: Grown, chunks: int, sentences: list[str], repeat: int, limit: int | None = None
) -> dict:
    rate = grown.grow(chunks, sentences)
    row = {"backend": grown.backend, "ingest_per_s": rate, **_query(grown.env, repeat, limit)}
    row["disk_mb"] = grown.disk_mb()
    row["load"] = os.getloadavg()[0]  # the machine's, beside each row: 2 cores are shared
    return row


def _row(row: dict) -> str:
    return (
        f"{row['chunks']:7d} {row['backend']:9} {row['ingest_per_s']:9.0f} "
        f"{row['open_ms']:8.1f} {row['median_ms']:10.1f} {row['limited_ms']:10.1f} "
        f"{row['p95_ms']:7.1f} {row['cpu_median_ms']:7.1f} "
        f"{row['peak_mb']:8.0f} {row['disk_mb']:8.1f} {row['load']:5.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="chunk counts, comma-separated")
    parser.add_argument("--large", action="store_true", help="also 100000 chunks (slow)")
    parser.add_argument("--huge", action="store_true", help="also 1000000 chunks (hours)")
    parser.add_argument("--stores", default="embedded,server", help="embedded, server or both")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the questions")
    parser.add_argument(
        "--questions", type=int, help="only the first N article questions (a quick smoke run)"
    )
    parser.add_argument("--query-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.query_child:
        _query_child(args.repeat, args.questions)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([100_000] if args.large else [])
    sizes += HUGE if args.huge else []
    sizes = sorted(set(sizes))
    stores = [s for s in args.stores.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        evalset.write_technical_docs(root / "technical", 1_500_000)
        sentences = _sentences(root / "technical")
        print(
            f"{'chunks':>7} {'store':9} {'ingest/s':>9} {'open ms':>8} {'median ms':>10} "
            f"{'limited ms':>10} {'p95 ms':>7} {'CPU ms':>7} {'peak MB':>8} {'disk MB':>8} "
            f"{'load':>5}",
            flush=True,
        )
        grown = {backend: Grown(root / backend, backend) for backend in stores}
        try:
            for size in sizes:
                for backend, library in list(grown.items()):
                    try:
                        row = measure(library, size, sentences, args.repeat, args.questions)
                    except Exception as exc:  # say why, and go on with the other store
                        print(f"{size:7d} {backend:9} failed: {exc!r}\n{library.why()}", flush=True)
                        library.close()
                        del grown[backend]
                        continue
                    print(_row(row), flush=True)
        finally:
            for library in grown.values():
                library.close()
        if len(grown) < len(stores):
            sys.exit(1)


if __name__ == "__main__":
    main()
