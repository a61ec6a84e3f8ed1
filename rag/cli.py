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
KNOWN_DOWNLOADS = {"phi-4-mini": "phi-4-mini-cpu-int4"}


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
    p.add_argument("--private", action="store_true",
                   help="never send these documents to a model off this machine")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("forget", parents=[common], help="remove documents from the index")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(run=cmd_forget)

    p = sub.add_parser("query", parents=[common], help="show the chunks that match a question")
    p.add_argument("question", nargs="?", help="omit to read one question per line from stdin")
    p.add_argument("-k", type=int, dest="top_k", help="number of chunks (RAG_TOP_K)")
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    p.add_argument("--source", dest="sources", action="append", metavar="PATH_OR_GLOB",
                   help="search only matching documents, e.g. 'manuals/*.pdf'; repeatable")
    p.set_defaults(run=cmd_query)

    p = sub.add_parser("eval", parents=[common], help="measure retrieval on questions with answers")
    p.add_argument("qa", type=Path, help='JSON lines: {"question", "answers": [...], "evidence"}')
    p.add_argument("--variant", action="append", default=[], metavar="SETTING=VALUE[,...]",
                   help="also measure with these settings, e.g. search_mode=vector; repeatable")
    p.add_argument("--failures", type=int, default=5, metavar="K",
                   help="list questions without a hit in the top K (default 5; 0 lists none)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("ask", parents=[common], help="answer a question from the documents")
    p.add_argument("question")
    p.add_argument("-k", type=int, dest="top_k", help="number of chunks (RAG_TOP_K)")
    p.add_argument("--json", action="store_true",
                   help="print answer, evidence, sources and stats as one JSON object")
    p.set_defaults(run=cmd_ask)

    p = sub.add_parser("summarize", parents=[common],
                       help="summarise one whole indexed document (map-reduce)")
    p.add_argument("path", help="the document: its path or file name as indexed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=cmd_summarize)

    p = sub.add_parser("sources", parents=[common], help="list indexed documents")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_sources)

    p = sub.add_parser("serve", parents=[common], help="serve an OpenAI-compatible HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--api-key", help="require this bearer key from clients")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("models", parents=[common],
                       help="show each configured model: reachable? context window?")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("compare", help="the same retrieved context through several models, timed")
    p.add_argument("questions", nargs="+", metavar="QUESTION")
    p.add_argument("--index", type=Path, help="index folder (RAG_INDEX)")
    p.add_argument("--collection", help="Chroma collection (RAG_COLLECTION)")
    p.add_argument("--llm", dest="models", action="append", required=True, metavar="SPEC",
                   help="a model spec; give it once per model to compare")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser("model", help="manage the chat model")
    model_sub = p.add_subparsers(dest="action", required=True)
    p = model_sub.add_parser("prepare", parents=[common],
                             help="build the embedded model now (otherwise on first use)")
    p.set_defaults(run=cmd_model_prepare)
    p = model_sub.add_parser("download", parents=[common],
                             help="download a known model (needs the internet)")
    p.add_argument("name", choices=sorted(KNOWN_DOWNLOADS))
    p.set_defaults(run=cmd_model_download)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings().with_overrides(
        index=getattr(args, "index", None),
        collection=getattr(args, "collection", None),
        llm=getattr(args, "llm", None),
        top_k=getattr(args, "top_k", None),
        sources=getattr(args, "sources", None),
    )


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import Ingestor, discover
    from rag.retrieval import open_library

    target = discover(args.paths, exclude=[settings.index])
    library = open_library(settings)
    summary = Ingestor(
        library, extra_metadata={"private": True} if args.private else {},
    ).run(target, prune=args.prune)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.render())
    return summary.exit_code


def _collection(settings: Settings):
    """The index alone, for commands that never embed: no model to load."""
    from rag import store

    return store.open_collection(settings.index, settings.collection, settings.embedding_model)


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import forget
    from rag.retrieval import open_library

    gone = forget(open_library(settings), args.paths)  # the model loads only to embed
    for source in gone:
        print(f"forgot {source}")
    if not gone:
        print("Nothing in the index matched those paths.", file=sys.stderr)
    return 0 if gone else 1


def _hit_json(hit) -> dict:
    c = hit.chunk
    return {"rank": hit.rank, "text": c.text, "source": c.source, "page": c.page,
            "heading": c.heading, "score": round(hit.score, 4),
            "similarity": None if hit.similarity is None else round(hit.similarity, 4)}


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


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag import evaluation
    from rag.retrieval import open_library

    questions = evaluation.load_questions(args.qa)
    variants = evaluation.variants(settings, args.variant)  # a typo fails before the model loads
    reports = evaluation.evaluate(open_library(settings), questions, variants)
    print(json.dumps(evaluation.as_dict(reports, args.failures), indent=2) if args.json
          else evaluation.render(reports, args.failures))
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_ask(args.question, settings, as_json=args.json))


def _progress(done: int, total: int) -> None:
    if done < total:  # the last step is the answer itself, streamed to stdout
        print(f"summarising: step {done + 1} of {total}", file=sys.stderr, flush=True)


async def _ask(question: str, settings: Settings, as_json: bool = False) -> int:
    from rag import chat
    from rag.retrieval import open_library
    from rag.routing import ModelPool

    pool = ModelPool(settings)  # checks every spec before the embedder loads
    turn = await chat.prepare(question, open_library(settings), settings)
    turn.progress = _progress
    async for delta in chat.stream_answer(turn, pool, settings):
        if not as_json:
            print(delta, end="", flush=True)
    if as_json:
        print(json.dumps(_turn_json(turn), indent=2))
        return 0
    print()
    if turn.looped:  # the terminal cannot take back what it printed: say what is kept
        print(f"\nWithout the repetition:\n{turn.text}")
    for notice in turn.notices():
        print(f"note: {notice}", file=sys.stderr)
    for claim in turn.unsupported:
        print(f"not in the passages: {claim.text}", file=sys.stderr)
    if turn.summary is not None:
        print(f"\nSummary of {turn.summary.source} ({turn.summarised} passages read)")
        return 0
    if turn.evidence:
        print("\nEvidence:")
        for item in turn.evidence:
            print(f"  \"{' '.join(item.text.split())}\"\n     {item.label()}, "
                  f"characters {item.start}-{item.end}  ({item.source})")
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    print("\nSources:" if cited else "\nRetrieved (not cited):")
    for n, hit in shown:
        print(f"  [{n}] {hit.chunk.label()}  ({hit.chunk.source})")
    return 0


def _turn_json(turn) -> dict:
    st = turn.stats
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    return {
        "answer": turn.text,
        "evidence": [e.as_dict() for e in turn.evidence],
        "sources": [{"number": n, "cited": cited, "source": h.chunk.source, "page": h.chunk.page,
                     "heading": h.chunk.heading, "start": h.chunk.start, "end": h.chunk.end}
                    for n, h in shown],
        "unsupported": [c.as_dict() for c in turn.unsupported],
        "notices": turn.notices(),
        "model": turn.model,
        "stats": {"retrieval_ms": round(st.retrieval_ms, 1), "prompt_tokens": st.prompt_tokens,
                  "first_token_s": None if st.first_token_s is None else round(st.first_token_s, 3),
                  "answer_s": round(st.answer_s, 3), "answer_tokens": st.answer_tokens,
                  "tokens_per_s": None if st.tokens_per_s is None else round(st.tokens_per_s, 2),
                  "looped": turn.looped},
    }


def cmd_summarize(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_summarize(args.path, settings, args.json))


async def _summarize(path: str, settings: Settings, as_json: bool) -> int:
    from rag import chat, summaries
    from rag.retrieval import open_library
    from rag.routing import ModelPool

    pool = ModelPool(settings)
    library = open_library(settings)
    request = await asyncio.to_thread(summaries.locate, library, path)
    turn = chat.Turn(f"Summarize {request.name}", [], summary=request, progress=_progress)
    async for delta in chat.stream_answer(turn, pool, settings):
        if not as_json:
            print(delta, end="", flush=True)
    if as_json:
        print(json.dumps({"source": request.source, "summary": turn.text,
                          "passages": turn.summarised, "model": turn.model}, indent=2))
    else:
        print(f"\n\n({turn.summarised} passages of {request.source} read by {turn.model})")
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


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from rag.retrieval import open_library
    from rag.routing import ModelPool
    from rag.server import RAG_MODEL, create_app, model_id

    pool = ModelPool(settings)
    app = create_app(settings, open_library(settings), pool, api_key=args.api_key)
    served = model_id(pool.load(settings.llm).name)
    print(f"OpenAI-compatible API at http://{args.host}:{args.port}/v1 "
          f"(models: {RAG_MODEL}, {served})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from rag.models.spec import describe
    from rag.routing import ModelPool

    rows = [("primary", settings.llm)] + [("fallback", s) for s in settings.llm_fallback]
    rows += [(f"route {task}", spec) for task, spec in settings.llm_routes.items()]
    ModelPool(settings)  # every spec parses, or one sentence says which does not
    for role, spec in rows:
        state = describe(spec, settings)
        print(f"{role:10} {spec}\n           {state}")
    return 0


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_compare(args.questions, args.models, settings))


async def _compare(questions: list[str], specs: list[str], settings: Settings) -> int:
    from rag import chat
    from rag.retrieval import open_library
    from rag.routing import ModelPool

    pools, failed = {}, {}
    for spec in specs:
        pool = ModelPool(settings.with_overrides(llm=spec, llm_fallback=[], llm_routes={}))
        try:
            await asyncio.to_thread(pool.load, spec)  # loading is not answering: time it apart
            pools[spec] = pool
        except ModelUnavailable as exc:
            failed[spec] = str(exc)
    for spec, reason in failed.items():
        print(f"{spec}: not compared. {reason}", file=sys.stderr)
    library = open_library(settings)
    print(f"{'model':40} {'first token':>11} {'tokens/s':>9} {'tokens':>7} {'chars':>6}  question")
    for question in questions:
        turn = await chat.prepare(question, library, settings)  # one retrieval for all models
        for spec, pool in pools.items():
            trial = chat.Turn(question, turn.hits)
            try:
                async for _ in chat.stream_answer(trial, pool, settings):
                    pass
            except ModelUnavailable as exc:
                print(f"{spec[:40]:40} {'failed':>11}  {trial.skipped[-1] if trial.skipped else exc}")
                failed[spec] = str(exc)
                continue
            st = trial.stats
            rate = f"{st.tokens_per_s:.1f}" if st.tokens_per_s else "-"
            print(f"{trial.model[:40]:40} {st.first_token_s or 0:10.2f}s {rate:>9} "
                  f"{st.answer_tokens:7d} {len(trial.text):6d}  {question[:50]}")
    return 1 if failed else 0


def cmd_model_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from rag.models.embedded import prepare_embedded_model

    folder = prepare_embedded_model(settings.cache_dir)
    print(f"Embedded model ready: {folder}")
    return 0


def cmd_model_download(args: argparse.Namespace, settings: Settings) -> int:
    from rag.models.download import download

    folder = download(KNOWN_DOWNLOADS[args.name], settings.cache_dir)
    print(f"Downloaded {args.name} to {folder}\nUse it with: RAG_LLM=onnx:{folder}")
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
