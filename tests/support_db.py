"""A real PostgreSQL cluster for the tests: initdb and pg_ctl in a temporary folder.

The cluster listens on a free loopback port and a socket in its own folder, so
it never meets another PostgreSQL on the machine. PostgreSQL refuses to run as
root; as root, the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import free_port


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def missing() -> str | None:
    """Why PostgreSQL cannot run here, or None."""
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            return f"PostgreSQL's {tool} is not on PATH (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster; yield an admin URL (postgresql://...); stop and delete it after."""
    folder = Path(tempfile.mkdtemp(prefix="rag-pg-"))
    data, log = folder / "data", folder / "server.log"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            _as_server_user(cmd), capture_output=True, text=True, timeout=120, check=False
        )

    done = run(
        ["initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
    )
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
    options = f"-p {port} -k {folder} -h 127.0.0.1 -F"
    done = run(
        ["pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"]
    )
    if done.returncode:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start:\n{done.stdout}{done.stderr}\n{text}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(["pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


async def fresh_database(admin_url: str) -> str:
    """A new empty database in the cluster; returns its URL."""
    import asyncpg

    name = "t" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name
