"""Choosing the chat model from a short spec such as ``foundry:phi-4-mini``.

The kinds themselves, and what each does, are entries in ``rag/models/registry.py``."""

from __future__ import annotations

from rag.config import Settings
from rag.errors import RagError
from rag.models.base import ChatModel
from rag.models.registry import BACKENDS, Backend, forms

FORMS = forms()


def parse(spec: str) -> tuple[str, str]:
    """Split a spec into its kind and argument, or say what a valid one looks like."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    backend = BACKENDS.get(kind)
    if backend is None or not backend.accepts(arg):
        raise RagError(f"Unknown model spec {spec!r}: use {FORMS}.")
    return kind, arg


def _backend(spec: str) -> tuple[Backend, str]:
    kind, arg = parse(spec)
    return BACKENDS[kind], arg


def label(spec: str) -> str:
    """A name for people, e.g. "phi-4-mini (Foundry Local)"."""
    backend, arg = _backend(spec)
    return backend.label(arg)


def load_chat_model(spec: str, settings: Settings) -> ChatModel:
    backend, arg = _backend(spec)
    return backend.load(arg, settings)


def describe(spec: str, settings: Settings) -> str:
    """One line on whether the model can answer now, without loading it."""
    backend, arg = _backend(spec)
    return backend.describe(arg, settings)
