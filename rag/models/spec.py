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
    )
