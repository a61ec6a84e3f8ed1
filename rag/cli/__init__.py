"""The ``rag`` command: ingest, query, ask, chat, chats, sources, check, forget, serve, model.

Each command group is a module here that adds its own subcommands next to their handlers;
this one assembles the parser and runs a command behind a terminal-safe output."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from rag.cli import access, ask, chats, library, models, search, serve, users
from rag.cli.base import AddCommand, Handler
from rag.config import Settings
from rag.errors import ModelUnavailable, RagError
from rag.sanitize import terminal_text

USAGE_ERROR = 2
GROUPS = (library, search, ask, chats, serve, models, users, access)
# The order `rag --help` has always listed the commands in (the groups interleave).
ORDER = (
    "ingest",
    "forget",
    "query",
    "eval",
    "ask",
    "chat",
    "chats",
    "summarize",
    "sources",
    "check",
    "serve",
    "models",
    "compare",
    "user",
    "model",
    "library",
    "key",
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", type=Path, help="index folder (RAG_INDEX)")
    common.add_argument("--collection", help="Chroma collection (RAG_COLLECTION)")
    common.add_argument("--llm", help="chat model spec (RAG_LLM)")

    parser = argparse.ArgumentParser(prog="rag", description="Chat with your documents, offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    adders: dict[str, AddCommand] = {}
    for group in GROUPS:
        adders.update(group.COMMANDS)
    for name in sorted(adders, key=ORDER.index):  # a command missing from ORDER fails here
        adders[name](sub, common)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings().with_overrides(
        index=getattr(args, "index", None),
        collection=getattr(args, "collection", None),
        llm=getattr(args, "llm", None),
        top_k=getattr(args, "top_k", None),
        sources=getattr(args, "sources", None),
    )


class _TerminalSafe:
    """A text stream passing on what is written without escape sequences or control
    characters (rag/sanitize.py): file names, documents and answers reach the terminal
    through every print of every command, so the filter sits here, once."""

    def __init__(self, stream: TextIO, keep_cr: bool = False) -> None:
        self._stream, self._keep_cr = stream, keep_cr

    def write(self, text: str) -> int:
        return self._stream.write(terminal_text(text, self._keep_cr))

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding ...
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    # Indexes, chats, uploads and keys this process writes: this account's alone.
    os.umask(0o077)
    out, err = sys.stdout, sys.stderr
    # stderr keeps carriage returns: the ingest progress bar redraws its line with them.
    sys.stdout, sys.stderr = _TerminalSafe(out), _TerminalSafe(err, keep_cr=True)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        run: Handler = args.run
        return run(args, _settings(args))
    except ValidationError as exc:
        for err in exc.errors():
            name = "RAG_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"error: {name}: {err['msg']}", file=sys.stderr)
        return USAGE_ERROR
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) left; say nothing more and don't trace back at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
