"""``rag query`` and ``rag eval``: retrieval alone, no chat model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings

if TYPE_CHECKING:
    from rag.library.chunks import Hit


def _add_query(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("query", parents=[common], help="show the chunks that match a question")
    p.add_argument("question", nargs="?", help="omit to read one question per line from stdin")
    p.add_argument("-k", type=int, dest="top_k", help="number of chunks (RAG_TOP_K)")
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    p.add_argument(
        "--source",
        dest="sources",
        action="append",
        metavar="PATH_OR_GLOB",
        help="search only matching documents, e.g. 'manuals/*.pdf'; repeatable",
    )
    p.set_defaults(run=cmd_query)


def _hit_json(hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {
        "rank": hit.rank,
        "text": c.text,
        "source": c.source,
        "page": c.page,
        "heading": c.heading,
        "score": round(hit.score, 4),
        "similarity": None if hit.similarity is None else round(hit.similarity, 4),
    }


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from rag.library.search import open_library, search

    library = open_library(settings)  # loaded once for every question on stdin
    questions = [args.question] if args.question else (line.strip() for line in sys.stdin)
    for question in questions:
        if not question:
            continue
        hits = search(library, question, settings.top_k)
        if args.json:
            print(
                json.dumps({"question": question, "hits": [_hit_json(h) for h in hits]}), flush=True
            )
            continue
        print(f"? {question}")
        for h in hits:
            snippet = " ".join(h.chunk.text.split())[:160]
            print(f"  {h.rank}. [{h.score:.3f}] {h.chunk.label()}\n     {snippet}")
    return 0


def _add_eval(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="measure retrieval on questions with answers")
    p.add_argument("qa", type=Path, help='JSON lines: {"question", "answers": [...], "evidence"}')
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="SETTING=VALUE[,...]",
        help="also measure with these settings, e.g. search_mode=vector; repeatable",
    )
    p.add_argument(
        "--failures",
        type=int,
        default=5,
        metavar="K",
        help="list questions without a hit in the top K (default 5; 0 lists none)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=cmd_eval)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.library import evaluation
    from rag.library.search import open_library

    questions = evaluation.load_questions(args.qa)
    variants = evaluation.variants(settings, args.variant)  # a typo fails before the model loads
    reports = evaluation.evaluate(open_library(settings), questions, variants)
    print(
        json.dumps(evaluation.as_dict(reports, args.failures), indent=2)
        if args.json
        else evaluation.render(reports, args.failures)
    )
    return 0


COMMANDS: dict[str, AddCommand] = {
    "query": _add_query,
    "eval": _add_eval,
}
