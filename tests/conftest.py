"""Shared fixtures: the real embedding model, a real Chroma index on disk, the real tiny model.

Loading models is slow, so they are session-scoped; every index is a fresh
temporary folder so tests never see each other's documents.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from rag.config import Settings
from rag.embeddings.embedder import Embedder, create_embedder
from rag.library.search import Library, open_library

from support_markers import unit_guard

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "data"

# Chainlit writes .chainlit/ and .files/ into its app root on import.
os.environ.setdefault("CHAINLIT_APP_ROOT", str(ROOT))
# Tests talk to this machine only: Foundry Local's online catalog becomes a closed
# loopback port, which the SDK treats like being offline.
os.environ.setdefault("RAG_FOUNDRY_CATALOG_URL", "http://127.0.0.1:9/asset-gallery/v1.0/models")


@pytest.fixture(scope="session")
def embedder(models) -> Embedder:
    """The default embedder (ONNX Runtime); tests/embeddings/test_embedder_contract.py holds it to
    the sentence-transformers reference."""
    return create_embedder(Settings())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a fresh, empty index; the model cache is the shared per-user one."""
    return Settings(index=tmp_path / "index", collection="test")


@pytest.fixture
def library(settings: Settings, embedder) -> Library:
    return open_library(settings, embedder)


@pytest.fixture
def sample_docs(tmp_path: Path) -> Path:
    """A private copy of data/ (without its index) that a test may change."""
    target = tmp_path / "docs"
    shutil.copytree(SAMPLE_DATA, target, ignore=shutil.ignore_patterns("index"))
    return target


@pytest.fixture(scope="session")
def embedded_model(models):
    """The real tiny chat model, built on first use into the per-user cache."""
    from rag.models.spec import load_chat_model

    return load_chat_model("embedded", Settings())


# Markers from what a test uses, so that `pytest -m unit` is a quick loop (under a minute):
# - a test under tests/browser/ is browser;
# - a test is integration when it, or any fixture it uses, asks for `models` (loads a real
#   model) or `processes` (starts processes or servers, or opens sockets), or when it is
#   marked `pytest.mark.integration` (a whole module: `pytestmark = ...`);
# - everything else is unit, and a unit test that starts a process or connects a socket
#   fails (tests/support_markers.py), so that such a test cannot be marked unit by mistake.
BROWSER = Path(__file__).resolve().parent / "browser"
DECLARATIONS = {"models", "processes"}


@pytest.fixture(scope="session")
def models() -> None:
    """Ask for this in a test or fixture that loads a real model: it makes the test
    integration."""


@pytest.fixture(scope="session")
def processes() -> None:
    """Ask for this in a test or fixture that starts processes or servers, or opens sockets:
    it makes the test integration, where starting them is allowed."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(BROWSER):
            item.add_marker(pytest.mark.browser)
        if item.get_closest_marker("browser") or item.get_closest_marker("integration"):
            continue
        if DECLARATIONS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


def guarded(item: pytest.Item) -> Generator[None, object, object]:
    with unit_guard(item) as refused:
        result = yield
    if refused:
        pytest.fail(refused[0], pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from guarded(item))


@pytest.fixture(scope="session")
def postgres_server(processes) -> Iterator[str]:
    """One real PostgreSQL cluster for the session (tests/support_db.py): its admin URL.
    A test module takes a database of its own with ``support_db.fresh_database``."""
    from support_db import missing, postgres_cluster

    reason = missing()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with postgres_cluster() as url:
        yield url
