"""Shared fixtures: the real embedding model, a real Chroma index on disk, the real tiny model.

Loading models is slow, so they are session-scoped; every index is a fresh
temporary folder so tests never see each other's documents.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rag.config import Settings
from rag.embeddings import Embedder, create_embedder
from rag.retrieval import Library, open_library

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "data"

# Chainlit writes .chainlit/ and .files/ into its app root on import.
os.environ.setdefault("CHAINLIT_APP_ROOT", str(ROOT))
# Tests talk to this machine only: Foundry Local's online catalog becomes a closed
# loopback port, which the SDK treats like being offline.
os.environ.setdefault("RAG_FOUNDRY_CATALOG_URL", "http://127.0.0.1:9/asset-gallery/v1.0/models")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
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
def embedded_model():
    """The real tiny chat model, built on first use into the per-user cache."""
    from rag.models.spec import load_chat_model

    return load_chat_model("embedded", Settings())


# Markers by what a test uses, so `pytest -m unit` is a quick loop (under a minute):
# browser tests stay browser; a test that loads a model, ingests or starts processes
# is integration; everything else is unit. A new test that starts a process or a
# server without these fixtures: mark it `pytest.mark.integration` (kept as it is).
HEAVY_FIXTURES = {
    "embedder",
    "library",
    "embedded_model",
    "indexed",
    "index",
    "chat_model",
    "served_model",
    "model_dir",
    "model",
    "tokenizer",
    "reference",
    "app_url",
    "postgres",
    "chat_settings",
    "chroma_server",
}
# Modules whose tests run the real commands or servers as processes.
PROCESS_MODULES = {
    "test_cli",
    "test_benchmarks",
    "test_imports",
    "test_embedded_model",
    "test_security",
    "test_login_security",
    "test_chroma_guard",
    "test_openai_api",
    "test_private_sticky",
    "test_store_concurrency",
    "test_store_consistency",
    "test_store_contract",
    "test_watch",
    "test_chat_cli",
    "test_upload_formats",
    "test_limits",
    "test_store_failures",
}
# Single tests elsewhere that start processes.
PROCESS_TESTS = {
    "test_ingest_killed_mid_run_then_rerun_matches_a_clean_ingest",
    "test_two_processes_build_the_export_once",
    "test_kill_9_at_random_moments_never_leaves_check_unclean_after_the_next_run",
    "test_foundry_without_service_or_model_says_how_to_install",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("integration"):
            continue
        module = getattr(getattr(item, "module", None), "__name__", "").rpartition(".")[2]
        heavy = HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
        if (
            heavy
            or module in PROCESS_MODULES
            or getattr(item, "originalname", item.name) in PROCESS_TESTS
        ):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
