"""The guard that keeps unit tests unit: while a test marked unit sets up and runs (see
tests/conftest.py), starting a process or connecting an internet socket fails."""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

STARTS_A_PROCESS = (
    "this test starts a process or opens a socket ({what}), but it is marked unit: ask for the "
    "`processes` fixture (or mark it `pytest.mark.integration`): see tests/conftest.py"
)


class StartsAProcess(RuntimeError):
    pass


@contextlib.contextmanager
def unit_guard(item: pytest.Item) -> Iterator[list[str]]:
    """While a unit test sets up and runs, starting a process or connecting an internet
    socket raises, and is remembered so that code which catches the error still fails."""
    refused: list[str] = []
    if not item.get_closest_marker("unit"):
        yield refused
        return

    def refuse(what: str) -> Callable[..., NoReturn]:
        def refused_call(*args: object, **kwargs: object) -> NoReturn:
            refused.append(STARTS_A_PROCESS.format(what=what))
            raise StartsAProcess(refused[-1])

        return refused_call

    def connect(original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return refuse(f"socket connect to {address!r}")()
            return original(sock, address)

        return guarded

    with pytest.MonkeyPatch.context() as patch:
        # Popen covers subprocess.run and friends and asyncio's subprocesses.
        patch.setattr(subprocess.Popen, "_execute_child", refuse("subprocess"))
        patch.setattr(multiprocessing.process.BaseProcess, "start", refuse("multiprocessing"))
        for name in ("fork", "system", "posix_spawn", "posix_spawnp"):
            patch.setattr(os, name, refuse(f"os.{name}"))
        patch.setattr(socket.socket, "connect", connect(socket.socket.connect))
        patch.setattr(socket.socket, "connect_ex", connect(socket.socket.connect_ex))
        yield refused
