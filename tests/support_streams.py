"""Answers recorded once from the real embedded model, replayed delta by delta.

Whether a 135M model loops on a given prompt depends on its floating-point path:
the same prompt loops on one CPU and ends on its own on another. So the checks
around an answer (the loop guard, stop handling) are tested on what the real
model once wrote, replayed exactly: the stream of deltas is the model boundary,
and everything after it (the guard, the pipeline, the turn) runs for real.

Recordings live in tests/recorded/*.json. To record again (the real model, here):

    PYTHONPATH=. python tests/support_streams.py
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDED = Path(__file__).resolve().parent / "recorded"


@dataclass
class ReplayedModel:
    """A ChatModel whose answer is a recorded list of deltas; it notes how far the
    answer was read and whether its reader closed it before the end."""

    deltas: list[str]
    name: str = "SmolLM2-135M-Instruct (recorded)"
    context_window: int = 8192
    local: bool = True
    sent: int = 0  # deltas handed to the reader
    closed_early: bool = False  # the reader closed the stream before the last delta
    requests: list[dict] = field(default_factory=list)

    def count_tokens(self, text: str) -> int:
        return len(text.split())  # only the stats use it here

    async def stream(
        self,
        messages: Sequence[dict],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        self.requests.append({"messages": list(messages), "max_tokens": max_tokens})
        try:
            for delta in self.deltas:
                await asyncio.sleep(0)  # a real model yields to the loop between tokens
                self.sent += 1
                yield delta
        finally:
            self.closed_early = self.sent < len(self.deltas)


def load(name: str) -> dict:
    """A recording: ``deltas`` and how they were made."""
    return json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))


# What to record: name -> (question, folder of documents, settings overrides).
RECORDINGS = {
    # The prompt and decoding of before #13 (no evidence note, no repetition penalty):
    # on the machine it was recorded on, the model wrote the same sentence again and
    # again until the token limit.
    "looping-waggle-dance": (
        "What does the duration of the straight run in the waggle dance indicate?",
        ROOT / "benchmarks" / "encyclopedia",
        {
            "temperature": 0.0,
            "repetition_penalty": 1.0,
            "evidence_in_prompt": False,
            "stop_loops": False,
            "max_answer_tokens": 200,
        },
    ),
    # Today's prompt and decoding: an answer that ends on its own.
    "ends-meal-allowance": (
        "What is the daily meal allowance?",
        ROOT / "data",
        {"temperature": 0.0, "stop_loops": False},
    ),
}


async def _record(name: str, workdir: Path) -> dict:
    from rag.answers import answering
    from rag.config import Settings
    from rag.embeddings.embedder import create_embedder
    from rag.ingest.pipeline import Ingestor, discover
    from rag.library.search import open_library
    from rag.models.routing import ModelPool
    from rag.models.spec import load_chat_model

    question, folder, overrides = RECORDINGS[name]
    settings = Settings(index=workdir / name, collection="recording").with_overrides(**overrides)
    library = open_library(settings, create_embedder(settings))
    Ingestor(library).run(discover([folder]), progress=False)
    model = load_chat_model("embedded", settings)
    deltas: list[str] = []
    real_stream = model.stream

    async def recording(*args, **kwargs):
        async for delta in real_stream(*args, **kwargs):
            deltas.append(delta)
            yield delta

    model.stream = recording  # type: ignore[method-assign]
    turn = await answering.ask(
        question, library, ModelPool(settings, {"embedded": model}), settings
    )
    return {
        "question": question,
        "documents": str(folder.relative_to(ROOT)),
        "settings": overrides,
        "model": turn.model,
        "recorded_on": _cpu(),
        "deltas": deltas,
    }


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if sys.platform == "linux" else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _loops(deltas: list[str]) -> bool:
    from rag.answers.repetition import LoopGuard

    guard = LoopGuard()
    return any(guard.feed(d) for d in [*deltas, " "])


def main() -> int:
    import tempfile

    RECORDED.mkdir(exist_ok=True)
    kept = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in sys.argv[1:] or RECORDINGS:
            recording = asyncio.run(_record(name, Path(tmp)))
            if _loops(recording["deltas"]) != name.startswith("looping"):
                # Whether the model loops is this CPU's floating-point path: keep the old one.
                print(f"{name}: on this machine the answer does not fit the name; kept the old")
                continue
            path = RECORDED / f"{name}.json"
            path.write_text(json.dumps(recording, indent=1, ensure_ascii=False) + "\n")
            print(f"{path}: {len(recording['deltas'])} deltas")
            kept += 1
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
