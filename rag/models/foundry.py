"""Foundry Local, Microsoft's on-device runtime: a running service, or the SDK in-process.

``foundry:ALIAS`` first looks for a running Foundry Local service (the
``foundry`` CLI on Windows and macOS, or ``RAG_FOUNDRY_URL``) and talks to it
over its OpenAI-compatible API. Without a service, the ``foundry-local-sdk``
package runs the model inside this process. ``foundry:PATH`` registers a local
ONNX Runtime GenAI folder with the SDK first.

Why not the SDK's own web service for local folders: in foundry-local-sdk 2.2 it
resolves models only through the online catalog, so a registered folder is
invisible to it offline. The in-process session has no such gap.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from rag.config import Settings
from rag.errors import ModelUnavailable
from rag.models.base import ChatModel, Message, estimate_tokens
from rag.models.openai_compat import OpenAICompatibleChat, server_slots
from rag.models.threaded import stream_in_thread, wait_for_turn

if TYPE_CHECKING:  # the SDK itself loads only when a model runs in this process
    from foundry_local_sdk import FoundryLocalManager, IModel, Request

INSTALL_HINT = (
    "Install Foundry Local (Windows: `winget install Microsoft.FoundryLocal`, macOS: "
    "`brew install microsoft/foundrylocal/foundrylocal`) and run `foundry model run {alias}`, "
    "or choose another backend: RAG_LLM=onnx:PATH or RAG_LLM=openai:MODEL@URL."
)


def open_foundry(target: str, settings: Settings) -> ChatModel:
    folder = Path(target).expanduser()
    if not (folder / "genai_config.json").is_file():
        service = find_service(settings.foundry_url)
        if service:
            return _served(service, target, settings)
    return FoundryInProcessChat.open(target, settings)


def find_service(configured: str | None) -> str | None:
    """The base URL of a running Foundry Local service, or None."""
    candidates = [configured] if configured else _cli_service_urls()
    for base in candidates:
        base = base.rstrip("/").removesuffix("/v1")
        try:
            if httpx.get(f"{base}/v1/models", timeout=3).is_success:
                return base
        except httpx.HTTPError:
            continue
    if configured:
        raise ModelUnavailable(
            f"No Foundry Local service answers at {configured}: start it with "
            "`foundry service start` or unset RAG_FOUNDRY_URL."
        )
    return None


def _cli_service_urls() -> list[str]:
    # The service port changes from start to start; the CLI knows the current one.
    if not shutil.which("foundry"):
        return []
    try:
        out = subprocess.run(
            ["foundry", "service", "status"], capture_output=True, text=True, timeout=15
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [m.group(0) for m in re.finditer(r"https?://[\w.\-]+:\d+", out)]


def _served(base: str, alias: str, settings: Settings) -> ChatModel:
    ids = [m["id"] for m in httpx.get(f"{base}/v1/models", timeout=5).json().get("data", [])]
    # The service lists variant ids ("Phi-4-mini-instruct-generic-cpu:1") for an alias.
    wanted = alias.lower()
    match = next((i for i in ids if i.lower() == wanted), None) or next(
        (i for i in ids if i.lower().startswith(wanted)), None
    )
    if match is None:
        served = ", ".join(ids) or "none yet"
        raise ModelUnavailable(
            f"Foundry Local at {base} has not loaded {alias!r} (it serves: {served}): "
            f"run `foundry model run {alias}`."
        )
    return OpenAICompatibleChat(
        match,
        f"{base}/v1",
        timeout=settings.llm_timeout,
        context_window=settings.llm_context_window,
        name=f"{alias} (Foundry Local)",
        local_hosts=settings.llm_local_hosts,
        parallel=settings.llm_concurrency or server_slots(base) or 1,
    )


@contextmanager
def _no_telemetry() -> Iterator[None]:
    # disable_nonessential_telemetry still lets the SDK send a process-info event
    # at start-up; its uploader stays off only when it believes it runs in CI.
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved


def _manager(settings: Settings) -> FoundryLocalManager:
    with _no_telemetry():
        from foundry_local_sdk import Configuration, FoundryLocalManager, LogLevel

        if FoundryLocalManager.instance is None:
            root = settings.cache_dir / "foundry"
            catalog = settings.foundry_catalog_url
            FoundryLocalManager.initialize(
                Configuration(
                    app_name="local-rag-chat",
                    app_data_dir=str(root / "app"),
                    model_cache_dir=str(root / "models"),
                    logs_dir=str(root / "logs"),
                    log_level=LogLevel.ERROR,
                    disable_nonessential_telemetry=True,
                    catalog_urls=[(catalog, None)] if catalog else None,
                )
            )
        manager = FoundryLocalManager.instance
    if manager is None:  # initialize() sets it or raises; never None here
        raise ModelUnavailable("The Foundry Local SDK did not start in this process.")
    return manager


def _register(manager: FoundryLocalManager, folder: Path) -> IModel:
    from foundry_local_sdk import CatalogType, ModelInfoBuilder

    local = manager.get_catalog(CatalogType.LOCAL)
    # Registrations persist across runs; the id must be unique per folder.
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    model_id = f"{re.sub(r'[^a-z0-9-]+', '-', folder.name.lower())}-{digest}:1"
    model = local.get_model_variant(model_id)
    if model is None:
        info = ModelInfoBuilder().set_string_property("task", "chat-completion")
        model = local.register_model(str(folder.resolve()), model_id, info)
    return model


def _resolve(manager: FoundryLocalManager, alias: str) -> IModel:
    from foundry_local_sdk import CatalogType

    model = manager.get_catalog(CatalogType.LOCAL).get_model(alias)
    if model is None:
        model = manager.catalog.get_model(alias)  # the online catalog; None when offline
    if model is None:
        raise ModelUnavailable(
            f"Foundry Local does not know {alias!r} here (offline, or no such alias). "
            + INSTALL_HINT.format(alias=alias)
        )
    if not model.is_cached:
        model.download()
    return model


class FoundryInProcessChat:
    """A Foundry Local model loaded by the SDK inside this process."""

    local = True

    def __init__(self, model: IModel, name: str) -> None:
        self._model = model
        self.name = name
        self.context_window = int(model.context_length or 4096)
        self._turn = threading.Lock()  # one generation at a time, as with ONNX in-process

    @classmethod
    def open(cls, target: str, settings: Settings) -> FoundryInProcessChat:
        try:
            manager = _manager(settings)
        except ImportError as exc:
            raise ModelUnavailable(
                "The foundry-local-sdk package is missing: pip install foundry-local-sdk. "
                + INSTALL_HINT.format(alias=target)
            ) from exc
        folder = Path(target).expanduser()
        is_folder = (folder / "genai_config.json").is_file()
        model = _register(manager, folder) if is_folder else _resolve(manager, target)
        model.load()
        label = folder.name if is_folder else target
        return cls(model, f"{label} (Foundry Local, in-process)")

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        from foundry_local_sdk import Request

        request = Request()
        # Accepted and ignored: the SDK's search options have no repetition penalty, and
        # it refuses a nonzero frequency penalty ("ORT repetition_penalty has different
        # semantics", foundry-local-sdk 1.x). The loop guard still stops loops.
        return stream_in_thread(
            lambda cancel: self._generate(request, messages, max_tokens, temperature, cancel),
            on_cancel=request.cancel,
            name="foundry",
        )

    def _generate(
        self,
        request: Request,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        cancel: threading.Event,
    ) -> Iterator[str]:
        from foundry_local_sdk import (
            ChatSession,
            FoundryLocalException,
            MessageItem,
            RequestOptions,
            SearchOptions,
            TextItem,
        )

        if not wait_for_turn(self._turn, cancel):
            return
        roles = {
            "system": MessageItem.system,
            "user": MessageItem.user,
            "assistant": MessageItem.assistant,
        }
        try:
            # A session remembers its turns; one per request keeps questions independent.
            with ChatSession(self._model) as session, request:
                session.set_options(
                    RequestOptions(
                        search=SearchOptions(temperature=temperature, max_output_tokens=max_tokens)
                    )
                )
                session.set_streaming(True)
                for m in messages:
                    request.add_item(roles[m["role"]](m["content"]))
                with session.process_streaming_request(request) as answer:
                    for item in answer:
                        if cancel.is_set():
                            return
                        if isinstance(item, TextItem) and item.text:
                            yield item.text
        except FoundryLocalException as exc:
            if not cancel.is_set():
                raise ModelUnavailable(f"Foundry Local failed: {exc}") from exc
        finally:
            self._turn.release()
