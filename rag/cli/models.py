"""``rag models`` and ``rag model prepare|download``: the chat models."""

from __future__ import annotations

import argparse

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings

KNOWN_DOWNLOADS = {"phi-4-mini": "phi-4-mini-cpu-int4"}


def _add_models(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "models", parents=[common], help="show each configured model: reachable? context window?"
    )
    p.set_defaults(run=cmd_models)


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from rag.models.routing import ModelPool
    from rag.models.spec import describe

    rows = [("primary", settings.llm)] + [("fallback", s) for s in settings.llm_fallback]
    rows += [(f"route {task}", spec) for task, spec in settings.llm_routes.items()]
    ModelPool(settings)  # every spec parses, or one sentence says which does not
    for role, spec in rows:
        state = describe(spec, settings)
        print(f"{role:10} {spec}\n           {state}")
    return 0


def _add_model(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("model", help="manage the chat model")
    model_sub = p.add_subparsers(dest="action", required=True)
    p = model_sub.add_parser(
        "prepare",
        parents=[common],
        help="build the embedded chat model, its browser copy and the ONNX embedder now "
        "(otherwise on first use)",
    )
    p.set_defaults(run=cmd_model_prepare)
    p = model_sub.add_parser(
        "download", parents=[common], help="download a known model (needs the internet)"
    )
    p.add_argument("name", choices=sorted(KNOWN_DOWNLOADS))
    p.set_defaults(run=cmd_model_download)


def cmd_model_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from rag.embeddings.embedder import create_embedder
    from rag.models.embedded import prepare_embedded_model

    folder = prepare_embedded_model(settings.cache_dir)
    print(f"Embedded model ready: {folder}")
    create_embedder(settings).prepare()  # the ONNX export of the embedding model
    if settings.browser_llm != "off":
        from rag.models.browser import prepare_web_model

        print(f"Browser model ready: {prepare_web_model(settings)}")  # served by the app (#23)
    print(f"Embedding model ready: {settings.embedding_model} ({settings.embedder})")
    return 0


def cmd_model_download(args: argparse.Namespace, settings: Settings) -> int:
    from rag.models.download import download

    folder = download(KNOWN_DOWNLOADS[args.name], settings.cache_dir)
    print(f"Downloaded {args.name} to {folder}\nUse it with: RAG_LLM=onnx:{folder}")
    return 0


COMMANDS: dict[str, AddCommand] = {
    "models": _add_models,
    "model": _add_model,
}
