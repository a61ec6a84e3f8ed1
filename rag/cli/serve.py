"""``rag serve``: the OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
from pathlib import Path

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings


def _add_serve(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible HTTP API")
    p.add_argument("--index", type=Path, help="index folder (RAG_INDEX)")
    p.add_argument("--llm", help="chat model spec (RAG_LLM)")
    p.add_argument(
        "--collection",
        dest="collections",
        action="append",
        metavar="NAME",
        help="serve this collection as model rag-NAME; repeatable "
        "(RAG_SERVE_COLLECTIONS, else RAG_COLLECTION)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument(
        "--api-key",
        help="require this bearer key from clients (visible to other "
        "local users in the process list: prefer RAG_SERVE_API_KEY or --api-key-file)",
    )
    p.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="read the bearer key clients must send from this file",
    )
    p.add_argument(
        "--insecure-no-key",
        action="store_true",
        help="allow a bind beyond loopback without a key (anyone on the network)",
    )
    p.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from rag.models.routing import ModelPool
    from rag.web import limits, security
    from rag.web.keys import Keys
    from rag.web.serve import create_app, describe, open_libraries

    key = security.serve_key(settings, args.api_key_file, args.api_key)
    keys = Keys.of(settings)  # per-user keys (`rag key create`), read per request
    # before anything loads
    security.check_bind(
        args.host, key or ("per-user" if keys.exist() else None), args.insecure_no_key
    )
    pool = ModelPool(settings)
    names = args.collections or settings.serve_collections or [settings.collection]
    libraries = open_libraries(settings, names)
    app = create_app(settings, libraries, pool, api_key=key, keys=keys)
    # Only requests addressed to this machine by name (no DNS rebinding), from no web page
    # of another origin.
    guarded = security.HostOriginGuard(
        app, security.allowed_hosts(settings, args.host), settings.allowed_origins
    )
    print(
        f"OpenAI-compatible API at http://{args.host}:{args.port}/v1 "
        f"(models: {', '.join(app.state.models)})",
        *describe(libraries),
        sep="\n  ",
        flush=True,
    )
    uvicorn.run(
        guarded,
        host=args.host,
        port=args.port,
        log_level="warning",
        forwarded_allow_ips=settings.trusted_proxies,  # whose X-Forwarded-For names the client
        **limits.server_options(settings),  # slow, endless and too many connections
    )
    return 0


COMMANDS: dict[str, AddCommand] = {
    "serve": _add_serve,
}
