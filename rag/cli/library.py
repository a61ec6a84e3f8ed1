"""``rag ingest``, ``forget``, ``sources`` and ``check``: what is in the index."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings
from rag.errors import RagError

if TYPE_CHECKING:  # the store module loads Chroma: only commands that need it import it
    from rag.library.store import LibraryStore


def _add_ingest(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ingest", parents=[common], help="add files and folders to the index")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument(
        "--no-prune",
        dest="prune",
        action="store_false",
        help="keep indexed files that vanished from the folders",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    privacy = p.add_mutually_exclusive_group()
    privacy.add_argument(
        "--private",
        dest="private",
        action="store_const",
        const=True,
        help="never send these documents to a model off this machine "
        "(they stay private when ingested again)",
    )
    privacy.add_argument(
        "--shareable",
        dest="private",
        action="store_const",
        const=False,
        help="make private documents shareable again",
    )
    p.add_argument(
        "--no-ocr",
        dest="ocr",
        action="store_false",
        default=None,
        help="do not read scanned pages and images (RAG_OCR=false)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="after ingesting, keep the index in step as files change (Ctrl-C stops)",
    )
    p.add_argument(
        "--library",
        metavar="NAME",
        help="put the documents into this library (`rag library create NAME` made it)",
    )
    p.set_defaults(run=cmd_ingest)


def _into_library(settings: Settings, name: str | None) -> Settings:
    """The settings that write into library ``name``: a library is its own collection."""
    from rag.library.access import Access

    if name is None or name == settings.collection:
        return settings
    if name not in Access.of(settings).libraries():
        raise RagError(f"There is no library {name!r}: `rag library create {name}` makes it.")
    return settings.with_overrides(collection=name)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from rag.ingest.pipeline import Ingestor, discover
    from rag.library.search import open_library

    settings = _into_library(settings.with_overrides(ocr=args.ocr), args.library)
    target = None if args.watch else discover(args.paths, exclude=[settings.index])
    library = open_library(settings)
    ingestor = Ingestor(library, private=args.private)
    if target is None:  # --watch: a path may appear later
        from rag.ingest.watch import watch

        return watch(ingestor, args.paths, exclude=[settings.index])
    summary = ingestor.run(target, prune=args.prune)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.render())
    return summary.exit_code


def _store(settings: Settings, bring_in_step: bool = True) -> LibraryStore:
    """The index alone, for commands that never embed: no model to load."""
    from rag.library.store import open_store

    return open_store(settings, bring_in_step=bring_in_step)


def _add_forget(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("forget", parents=[common], help="remove documents from the index")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(run=cmd_forget)


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from rag.ingest.pipeline import forget
    from rag.library.search import open_library

    gone = forget(open_library(settings), args.paths)  # the model loads only to embed
    for source in gone:
        print(f"forgot {source}")
    if not gone:
        print("Nothing in the index matched those paths.", file=sys.stderr)
    return 0 if gone else 1


def _add_sources(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sources", parents=[common], help="list indexed documents")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_sources)


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    docs = sorted(store.documents().values(), key=lambda d: d.source)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "source": d.source,
                        "chunks": d.chunks,
                        "private": d.private,
                        "ingested_at": d.ingested_at,
                    }
                    for d in docs
                ]
            )
        )
        return 0
    for d in docs:
        print(f"{d.chunks:6d}  {d.source}" + ("  (private)" if d.private else ""))
    private = sum(d.private for d in docs)
    print(
        f"{len(docs)} document(s)"
        + (f", {private} of them private" if private else "")
        + f", {sum(d.chunks for d in docs)} chunk(s) in {store.backend}"
    )
    return 0


def _embed_lazily(settings: Settings) -> Callable[[list[str]], list[list[float]]]:
    """Embedding for a repair, the model loaded only if a vector must be made again."""
    loaded: list[Any] = []

    def embed(texts: list[str]) -> list[list[float]]:
        if not loaded:
            from rag.embeddings.embedder import create_embedder

            loaded.append(create_embedder(settings))
        return loaded[0].embed(texts)

    return embed


def _add_check(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "check",
        parents=[common],
        help="check that Chroma, the documents table and the word index agree",
    )
    p.add_argument("--repair", action="store_true", help="repair what disagrees")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_check)


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings, bring_in_step=False)
    report = store.repair(_embed_lazily(settings)) if args.repair else store.check()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.consistent else 1
    print(
        f"{report.backend}: {report.documents} document(s), {report.chunks_in_chroma} "
        f"chunk(s) in Chroma, {report.chunks_in_word_index} in the word index"
    )
    if report.damaged:
        print(report.damaged)
    if report.rebuilt:
        print(f"{report.rebuilt} chunk(s) embedded again from their text in Chroma")
    problems = {
        "ids only in Chroma": report.only_in_chroma,
        "ids only in the word index": report.only_in_word_index,
        "documents whose version disagrees": report.versions_disagree,
        "documents a writer left unfinished": report.unfinished,
        "chunks without a vector": report.without_vector,
    }
    for what, items in problems.items():
        if items:
            print(f"{len(items)} {what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}")
    print(
        "consistent"
        if report.consistent
        else "NOT consistent: run `rag check --repair`"
        if not args.repair
        else "NOT repaired"
    )
    return 0 if report.consistent else 1


COMMANDS: dict[str, AddCommand] = {
    "ingest": _add_ingest,
    "forget": _add_forget,
    "sources": _add_sources,
    "check": _add_check,
}
