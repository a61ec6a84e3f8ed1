"""A small real disk for the tests: a tmpfs, or else an ext4 image on a loop device; it
needs root (CI runs these tests as root on Debian), and a test that gets neither says why
it is skipped."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*command: str | Path) -> bool:
    try:
        done = subprocess.run(list(map(str, command)), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextmanager
def small_disk(folder: Path, size_mb: int = 64) -> Iterator[Path]:
    """A file system of ``size_mb`` mounted at ``folder`` while the block runs."""
    folder.mkdir(parents=True)
    image = folder.with_suffix(".img")
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", folder)
    if not mounted:  # e.g. a container allowed loop devices but not tmpfs
        mounted = (
            _run("truncate", "-s", f"{size_mb}M", image)
            and _run("mkfs.ext4", "-q", "-F", "-m", "0", image)
            and _run("mount", "-o", "loop", image, folder)
        )
    if not mounted:
        image.unlink(missing_ok=True)
        pytest.skip(
            "no small file system to fill: mounting a tmpfs or a loop device needs root "
            "(run the tests as root, as CI does)"
        )
    try:
        yield folder
    finally:
        _run("umount", "-l", folder)
        image.unlink(missing_ok=True)


def fill(disk: Path, leave_kb: int) -> Path:
    """A file taking all the free space of ``disk`` but ``leave_kb``; delete it to free it."""
    filler = disk / "filler"
    room = shutil.disk_usage(disk).free - leave_kb * 1024
    with filler.open("wb") as f:
        block = b"\0" * 2**20
        while room > 0:
            room -= f.write(block[: min(len(block), room)])
    return filler
