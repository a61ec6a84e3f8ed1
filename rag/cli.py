"""The ``rag`` command: ingest, query, ask, sources, forget, model prepare."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from rag.config import Settings
from rag.errors import ModelUnavailable, RagError

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", type=Path, help="index folder (RAG_INDEX)")
    common.add_argument("--collection", help="Chroma collection (RAG_COLLECTION)")
    common.add_argument("--llm", help="chat model spec (RAG_LLM)")

    parser = argparse.ArgumentParser(prog="rag", description="Chat with your documents, offline.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="add files and folders to the index")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--no-prune", dest="prune", action="store_false",
                   help="keep indexed files that vanished from the folders")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("forget", parents=[common], help="remove documents from the index")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(run=cmd_forget)

    p = sub.add_parser("query", parents=[common], help="show the chunks that match a question")
    p.add_argument("question", nargs="?", help="omit to read one question per line from stdin")
    p.add_argument("-k", type=int, dest="top_k", help="number of chunks (RAG_TOP_K)")
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    p.set_defaults(run=cmd_query)

    p = sub.add_parser("ask", parents=[common], help="answer a question from the documents")
    p.add_argument("question")
    p.add_argument("-k", type=int, dest="top_k", help="number of chunks (RAG_TOP_K)")
    p.set_defaults(run=cmd_ask)

    p = sub.add_parser("sources", parents=[common], help="list indexed documents")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_sources)

    p = sub.add_parser("model", help="manage the chat model")
    model_sub = p.add_subparsers(dest="action", required=True)
    p = model_sub.add_parser("prepare", parents=[common],
                             help="build the embedded model now (otherwise on first use)")
    p.set_defaults(run=cmd_model_prepare)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings().with_overrides(
        index=getattr(args, "index", None),
        collection=getattr(args, "collection", None),
        llm=getattr(args, "llm", None),
        top_k=getattr(args, "top_k", None),
    )


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import Ingestor, discover
    from rag.retrieval import open_library

    target = discover(args.paths, exclude=[settings.index])
    library = open_library(settings)
    summary = Ingestor(
        library.collection, library.embedder, settings.chunk_tokens, settings.chunk_overlap
    ).run(target, prune=args.prune)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.render())
    return summary.exit_code


def _collection(settings: Settings):
    """The index alone, for commands that never embed: no model to load."""
    from rag import store

    return store.open_collection(settings.index, settings.collection, settings.embedding_model)


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import forget

    gone = forget(_collection(settings), args.paths)
    for source in gone:
        print(f"forgot {source}")
    if not gone:
        print("Nothing in the index matched those paths.", file=sys.stderr)
    return 0 if gone else 1


def _hit_json(hit) -> dict:
    c = hit.chunk
    return {"rank": hit.rank, "text": c.text, "source": c.source, "page": c.page,
            "heading": c.heading, "score": round(hit.score, 4)}


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from rag.retrieval import open_library, search

    library = open_library(settings)  # loaded once for every question on stdin
    questions = [args.question] if args.question else (line.strip() for line in sys.stdin)
    for question in questions:
        if not question:
            continue
        hits = search(library, question, settings.top_k)
        if args.json:
            print(json.dumps({"question": question, "hits": [_hit_json(h) for h in hits]}),
                  flush=True)
            continue
        print(f"? {question}")
        for h in hits:
            snippet = " ".join(h.chunk.text.split())[:160]
            print(f"  {h.rank}. [{h.score:.3f}] {h.chunk.label()}\n     {snippet}")
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_ask(args.question, settings))


async def _ask(question: str, settings: Settings) -> int:
    from rag import chat
    from rag.models.spec import load_chat_model, parse
    from rag.retrieval import open_library

    parse(settings.llm)  # a typo in the spec should not wait for the embedder to load
    library = open_library(settings)
    model = load_chat_model(settings.llm, settings)
    turn = await chat.prepare(question, library, model, settings)
    async for delta in chat.stream_answer(turn, model, settings):
        print(delta, end="", flush=True)
    print()
    cited = turn.sources() or list(enumerate(turn.hits, start=1))
    print("\nSources:" if turn.sources() else "\nRetrieved (not cited):")
    for n, hit in cited:
        print(f"  [{n}] {hit.chunk.label()}  ({hit.chunk.source})")
    return 0


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    from rag import store

    counts = store.source_counts(_collection(settings))
    if args.json:
        print(json.dumps([{"source": s, "chunks": n} for s, n in sorted(counts.items())]))
    else:
        for source, n in sorted(counts.items()):
            print(f"{n:6d}  {source}")
        print(f"{len(counts)} document(s), {sum(counts.values())} chunk(s) in {settings.index}")
    return 0


def cmd_model_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from rag.models.embedded import prepare_embedded_model

    folder = prepare_embedded_model(settings.cache_dir)
    print(f"Embedded model ready: {folder}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args, _settings(args))
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


if __name__ == "__main__":
    sys.exit(main())
