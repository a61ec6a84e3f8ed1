"""The markers keep their promise: the folder and the fixtures a test uses decide its kind,
and a unit test cannot start a process or connect a socket, even one that catches the error."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support_markers import StartsAProcess, unit_guard

TESTS = Path(__file__).resolve().parents[1]
KINDS = ("unit", "integration", "browser")


def test_every_test_has_one_kind_and_the_browser_folder_decides_browser(request):
    for item in request.session.items:
        kinds = [kind for kind in KINDS if item.get_closest_marker(kind)]
        in_browser = item.path.is_relative_to(TESTS / "browser")
        assert len(kinds) == 1, (item.nodeid, kinds)
        assert (kinds == ["browser"]) == in_browser, item.nodeid


def test_a_test_that_asks_for_nothing_heavy_is_unit(request):
    assert request.node.get_closest_marker("unit")


def test_asking_for_processes_makes_a_test_integration(request, processes):
    assert request.node.get_closest_marker("integration")
    assert not request.node.get_closest_marker("unit")


def test_a_unit_test_cannot_start_a_process_even_if_it_catches_the_error(request):
    with unit_guard(request.node) as refused:
        with pytest.raises(StartsAProcess, match="`processes` fixture"):
            subprocess.run([sys.executable, "-c", "pass"], check=False)
        # What code under test might do; the refusal is still recorded, and fails the test.
        with contextlib.suppress(Exception):
            subprocess.run([sys.executable, "-c", "pass"], check=False)
    assert len(refused) == 2 and "subprocess" in refused[0]


def test_a_unit_test_cannot_connect_a_socket(request):
    with socket.create_server(("127.0.0.1", 0)) as server, unit_guard(request.node) as refused:
        with pytest.raises(StartsAProcess, match="socket connect"):
            socket.create_connection(server.getsockname(), timeout=5)
        left, right = socket.socketpair()  # in-process plumbing (asyncio's own) still works
        left.close()
        right.close()
    assert len(refused) == 1


def test_a_declared_test_may_start_processes(request, processes):
    with unit_guard(request.node) as refused:
        done = subprocess.run([sys.executable, "-c", "print('ran')"], capture_output=True)
    assert done.stdout.strip() == b"ran" and refused == []
