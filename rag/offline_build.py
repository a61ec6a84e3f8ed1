"""Building a model folder once per machine: a file lock so that one process builds
while the others wait, and the build steps run offline in a child process. Shared by
the embedded chat model and the embedder's ONNX export."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from rag.errors import ModelUnavailable

_STEP_TIMEOUT_S = 1800


def build_once(
    target: Path,
    ready: Callable[[Path], object],
    build: Callable[[Path], None],
    waiting: str,
    log: Callable[[str], None],
) -> Path:
    """``target``, built by ``build`` unless ``ready`` says it is: once per machine,
    whichever process comes first, the others waiting for it."""
    if ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f"{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(waiting)
        lock.acquire()
    try:
        if not ready(target):  # another process may have finished while we waited
            build(target)
    finally:
        lock.release()
    return target


def missing_packages(packages: dict[str, str]) -> list[str]:
    """The pip names of the modules (``{module: pip name}``) not installed."""
    return [pip for mod, pip in packages.items() if importlib.util.find_spec(mod) is None]


def run_offline_step(what: str, args: list[str], log: Callable[[str], None]) -> None:
    """``python ARGS`` in a child process with the model hubs switched off; its output
    is shown only when it fails."""
    log(f"{what}...")
    started = time.monotonic()
    # Offline: the GGUF holds everything; a hub lookup would only hang or fail.
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )
    try:
        done = subprocess.run(
            [sys.executable, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=_STEP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ModelUnavailable(
            f"{what} took over {_STEP_TIMEOUT_S} s and was stopped; try again."
        ) from None
    if done.returncode != 0:
        raise ModelUnavailable(
            f"{what} failed (exit code {done.returncode}); last output:\n{_tail(done.stdout)}"
        )
    log(f"{what}: done in {time.monotonic() - started:.0f} s")


def _tail(output: bytes, lines: int = 15) -> str:
    # Decoded by hand, not text=True: universal newlines would turn each tqdm
    # redraw (a carriage return) into a line; keep only each line's final state.
    text = (output or b"").decode("utf-8", errors="replace")
    kept = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join([line for line in kept if line.strip()][-lines:])
