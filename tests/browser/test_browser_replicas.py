"""Stateless replicas: two app processes ("machines", each with its own folder) over one
Chroma server and one PostgreSQL, in headless Chromium. A chat with a file, begun on
one replica, goes on in a fresh browser on the other, and is deleted there with its
file's chunks on the server.

Users log in by header (``RAG_AUTH=header:X-User``), as behind the load balancer's proxy;
both replicas share one ``CHAINLIT_AUTH_SECRET``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from servers import ROOT, App, ingest
from support_browser import ANSWER, ask, retrieval_step, retrieved
from support_db import missing, postgres_cluster
from support_store import ChromaServer

QUESTION = "How long does the Zephyr-9 drone fly on one battery?"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, embedded_model):
    reason = missing()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    root = tmp_path_factory.mktemp("replicas")
    server = ChromaServer(root / "chroma")
    apps: list[App] = []
    try:
        with postgres_cluster() as admin:
            settings = {
                "RAG_MAX_ANSWER_TOKENS": "120",
                "RAG_TEMPERATURE": "0",
                "RAG_AUTH": "header:X-User",
                "CHAINLIT_AUTH_SECRET": "replicas-secret-" + "r" * 40,
                "RAG_CHROMA_URL": server.url,
                "RAG_COLLECTION": "replicas",
                "RAG_DATABASE_URL": admin,  # a cluster of this module's own
            }
            ingest(ROOT / "data", root / "a" / "index", settings)
            (root / "b").mkdir()  # the other machine: nothing of its own yet
            apps = [App(root / name / "index", settings) for name in ("a", "b")]
            yield apps[0].url, apps[1].url, server
    finally:
        for running in apps:
            running.close()
        server.stop()


def _collections(server: ChromaServer) -> set[str]:
    reply = httpx.get(
        f"{server.url}/api/v2/tenants/default_tenant/databases/default_database/collections",
        timeout=30,
    )
    reply.raise_for_status()
    return {c["name"] for c in reply.json()}


def _open_as(browser, url: str, user: str):
    context = browser.new_context(extra_http_headers={"X-User": user})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(ANSWER, timeout=120_000)
    return context, page


def _zephyr_pdf(folder: Path) -> Path:
    from testdocs import write_pdf

    return write_pdf(
        folder / "zephyr.pdf",
        [
            "The Zephyr-9 survey drone carries 3 kilograms of cargo and flies for 47 minutes "
            "on one battery. Its range is 18 kilometres."
        ],
    )


def test_a_chat_with_a_file_begun_on_one_replica_goes_on_and_is_deleted_on_the_other(
    browser, replicas, tmp_path
):
    url_a, url_b, server = replicas
    context, page = _open_as(browser, url_a, "dana")
    try:
        pdf = _zephyr_pdf(tmp_path)
        page.set_input_files("input[type=file]", str(pdf))
        page.wait_for_selector(f"text={pdf.name}", timeout=30_000)
        ask(page, QUESTION, timeout=300)  # the file is read first, and the model loads
        assert retrieved(retrieval_step(page))[0].startswith("zephyr.pdf")
        page.wait_for_url(re.compile(r".*/thread/[\w-]+$"), timeout=30_000)
        chat = page.url.rsplit("/", 1)[1]
        assert f"chat-{chat}" in _collections(server)  # the file's chunks: on the server
    finally:
        context.close()

    # Replica B, a fresh browser: the chat is in its sidebar, its file still searched.
    context, page = _open_as(browser, url_b, "dana")
    try:
        item = page.locator(f"a[href='/thread/{chat}']")
        item.click()
        page.wait_for_url(re.compile(rf".*/thread/{chat}$"), timeout=30_000)
        page.locator("[data-step-type='user_message']", has_text=QUESTION).first.wait_for(
            timeout=30_000
        )
        page.wait_for_selector("#chat-submit", timeout=60_000)
        ask(page, QUESTION)
        assert retrieved(retrieval_step(page))[0].startswith("zephyr.pdf")

        item.hover()
        item.locator("#thread-options").click()
        page.get_by_role("menuitem", name="Delete").click()
        page.get_by_role("button", name="Confirm").click()
        item.wait_for(state="detached", timeout=30_000)
        deadline = time.monotonic() + 30
        while f"chat-{chat}" in _collections(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {name for name in _collections(server) if chat in name}
        assert left == set(), left  # chunks and documents table, gone from the server
        assert "replicas" in _collections(server)  # the shared library stays
    finally:
        context.close()
