"""Choosing the chat model from a short spec such as ``foundry:phi-4-mini``."""

from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.errors import RagError
from rag.models.base import ChatModel

FORMS = "embedded, onnx:PATH, foundry:ALIAS or openai:MODEL@BASE_URL"


def parse(spec: str) -> tuple[str, str]:
    """Split a spec into its kind and argument, or say what a valid one looks like."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    valid = (
        (kind == "embedded" and not arg)
        or (kind in ("onnx", "foundry") and arg)
        or (kind == "openai" and "@" in arg and arg.split("@", 1)[0] and "://" in arg)
    )
    if not valid:
        raise RagError(f"Unknown model spec {spec!r}: use {FORMS}.")
    return kind, arg


def label(spec: str) -> str:
    """A name for people, e.g. "phi-4-mini (Foundry Local)"."""
    kind, arg = parse(spec)
    if kind == "embedded":
        return "Embedded tiny model (SmolLM2-135M)"
    if kind == "onnx":
        return f"{Path(arg).name} (ONNX, in-process)"
    if kind == "foundry":
        name = Path(arg).name if Path(arg).expanduser().is_dir() else arg
        return f"{name} (Foundry Local)"
    model, url = arg.split("@", 1)
    return f"{model} ({url})"


def load_chat_model(spec: str, settings: Settings) -> ChatModel:
    kind, arg = parse(spec)
    if kind == "embedded":
        from rag.models.embedded import EMBEDDED_MODEL_NAME, prepare_embedded_model
        from rag.models.onnx_genai import OnnxGenAIChat

        folder = prepare_embedded_model(settings.cache_dir)
        return OnnxGenAIChat(folder, name=f"{EMBEDDED_MODEL_NAME} (embedded)")
    if kind == "onnx":
        from rag.models.onnx_genai import OnnxGenAIChat

        return OnnxGenAIChat(Path(arg).expanduser())
    if kind == "foundry":
        from rag.models.foundry import open_foundry

        return open_foundry(arg, settings)
    from rag.models.openai_compat import OpenAICompatibleChat

    model, base_url = arg.split("@", 1)
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return OpenAICompatibleChat(
        model,
        base_url,
        api_key=key,
        timeout=settings.llm_timeout,
        context_window=settings.llm_context_window,
        local_hosts=settings.llm_local_hosts,
    )


def describe(spec: str, settings: Settings) -> str:
    """One line on whether the model can answer now, without loading it."""
    kind, arg = parse(spec)
    if kind == "embedded":
        from rag.models.embedded import embedded_model_dir, is_ready

        folder = embedded_model_dir(settings.cache_dir)
        return (
            (_window(folder) + f", local, ready at {folder}")
            if is_ready(folder)
            else ("local; built on first use (or now with `rag model prepare`)")
        )
    if kind == "onnx":
        folder = Path(arg).expanduser()
        if not (folder / "genai_config.json").is_file():
            return f"NOT READY: no genai_config.json in {folder}"
        return _window(folder) + ", local"
    if kind == "foundry":
        return _describe_foundry(arg, settings)
    return _describe_server(arg, settings)


def _window(folder: Path) -> str:
    import json

    config = json.loads((folder / "genai_config.json").read_text())
    return f"context window {config['model']['context_length']} tokens"


def _describe_foundry(alias: str, settings: Settings) -> str:
    from rag.errors import ModelUnavailable
    from rag.models.foundry import find_service

    try:
        service = find_service(settings.foundry_url)
    except ModelUnavailable as exc:
        return f"NOT REACHABLE: {exc}"
    if service:
        return f"Foundry Local service at {service}, local"
    return "no Foundry Local service found; the SDK will load it in this process, local"


def _describe_server(arg: str, settings: Settings) -> str:
    import httpx

    from rag.models.openai_compat import on_host

    model, base_url = arg.split("@", 1)
    where = "local" if on_host(base_url, settings.llm_local_hosts) else "REMOTE (no private text)"
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "none"
    try:
        reply = httpx.get(
            f"{base_url.rstrip('/')}/models", timeout=3, headers={"Authorization": f"Bearer {key}"}
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
