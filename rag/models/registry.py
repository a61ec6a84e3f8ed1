"""The kinds of chat model, one entry each: how its spec is written and checked, named,
loaded and described. A new backend is one class here and one line in ``BACKENDS``.

Each entry imports its model's runtime inside the method that needs it, so that reading
this registry (to check a spec or name a model) loads no model: ``rag sources`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from rag.config import Settings
from rag.errors import ModelUnavailable
from rag.models.base import ChatModel


class Backend(Protocol):
    form: str  # how a spec of this kind is written, e.g. "foundry:ALIAS"

    def accepts(self, arg: str) -> bool:
        """Whether ``arg``, the part of the spec after "kind:", is well formed."""
        ...

    def label(self, arg: str) -> str:
        """A name for people, e.g. "phi-4-mini (Foundry Local)"."""
        ...

    def load(self, arg: str, settings: Settings) -> ChatModel: ...

    def describe(self, arg: str, settings: Settings) -> str:
        """One line on whether the model can answer now, without loading it."""
        ...


class Embedded:
    form = "embedded"

    def accepts(self, arg: str) -> bool:
        return not arg

    def label(self, arg: str) -> str:
        return "Embedded tiny model (SmolLM2-135M)"

    def load(self, arg: str, settings: Settings) -> ChatModel:
        from rag.models.embedded import EMBEDDED_MODEL_NAME, prepare_embedded_model
        from rag.models.worker import ProcessChat

        folder = prepare_embedded_model(settings.cache_dir)
        return ProcessChat(folder, name=f"{EMBEDDED_MODEL_NAME} (embedded)")

    def describe(self, arg: str, settings: Settings) -> str:
        from rag.models.embedded import embedded_model_dir, is_ready

        folder = embedded_model_dir(settings.cache_dir)
        return (
            (_window(folder) + f", local, ready at {folder}")
            if is_ready(folder)
            else ("local; built on first use (or now with `rag model prepare`)")
        )


class Onnx:
    form = "onnx:PATH"

    def accepts(self, arg: str) -> bool:
        return bool(arg)

    def label(self, arg: str) -> str:
        return f"{Path(arg).name} (ONNX, in-process)"

    def load(self, arg: str, settings: Settings) -> ChatModel:
        from rag.models.worker import ProcessChat

        return ProcessChat(Path(arg).expanduser())

    def describe(self, arg: str, settings: Settings) -> str:
        folder = Path(arg).expanduser()
        if not (folder / "genai_config.json").is_file():
            return f"NOT READY: no genai_config.json in {folder}"
        return _window(folder) + ", local"


class Foundry:
    form = "foundry:ALIAS"

    def accepts(self, arg: str) -> bool:
        return bool(arg)

    def label(self, arg: str) -> str:
        name = Path(arg).name if Path(arg).expanduser().is_dir() else arg
        return f"{name} (Foundry Local)"

    def load(self, arg: str, settings: Settings) -> ChatModel:
        from rag.models.foundry import open_foundry

        return open_foundry(arg, settings)

    def describe(self, arg: str, settings: Settings) -> str:
        from rag.models.foundry import find_service

        try:
            service = find_service(settings.foundry_url)
        except ModelUnavailable as exc:
            return f"NOT REACHABLE: {exc}"
        if service:
            return f"Foundry Local service at {service}, local"
        return "no Foundry Local service found; the SDK will load it in this process, local"


class OpenAICompatible:
    form = "openai:MODEL@BASE_URL"

    def accepts(self, arg: str) -> bool:
        return "@" in arg and bool(arg.split("@", 1)[0]) and "://" in arg

    def label(self, arg: str) -> str:
        model, url = arg.split("@", 1)
        return f"{model} ({url})"

    def load(self, arg: str, settings: Settings) -> ChatModel:
        from rag.models.openai_compat import OpenAICompatibleChat, server_slots

        model, base_url = arg.split("@", 1)
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAICompatibleChat(
            model,
            base_url,
            api_key=key,
            timeout=settings.llm_timeout,
            context_window=settings.llm_context_window,
            local_hosts=settings.llm_local_hosts,
            parallel=settings.llm_concurrency or server_slots(base_url, key) or 1,
        )

    def describe(self, arg: str, settings: Settings) -> str:
        import httpx

        from rag.models.openai_compat import on_host

        model, base_url = arg.split("@", 1)
        local = on_host(base_url, settings.llm_local_hosts)
        where = "local" if local else "REMOTE (no private text)"
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "none"
        try:
            reply = httpx.get(
                f"{base_url.rstrip('/')}/models",
                timeout=3,
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.HTTPError as exc:
            return f"NOT REACHABLE at {base_url} ({type(exc).__name__}), {where}"
        if reply.status_code == 401:
            return f"reachable, but the API key was rejected (RAG_LLM_API_KEY), {where}"
        served = [m.get("id") for m in reply.json().get("data", [])] if reply.is_success else []
        found = "serves it" if model in served else f"does not list {model!r}"
        return (
            f"reachable, {found}, context window {settings.llm_context_window} tokens "
            f"(RAG_LLM_CONTEXT_WINDOW), {where}"
        )


def _window(folder: Path) -> str:
    config = json.loads((folder / "genai_config.json").read_text())
    return f"context window {config['model']['context_length']} tokens"


# In the order the error message for an unknown spec lists them.
BACKENDS: dict[str, Backend] = {
    "embedded": Embedded(),
    "onnx": Onnx(),
    "foundry": Foundry(),
    "openai": OpenAICompatible(),
}


def forms() -> str:
    """How a valid spec looks, e.g. "embedded, onnx:PATH, foundry:ALIAS or openai:..."."""
    written = [backend.form for backend in BACKENDS.values()]
    return ", ".join(written[:-1]) + " or " + written[-1]
