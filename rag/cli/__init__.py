"""The ``rag`` command: ingest, query, ask, chat, chats, sources, check, forget, serve, model."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rag.config import Settings
from rag.errors import ModelUnavailable, RagError
from rag.sanitize import terminal_text

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
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("forget", parents=[common], help="remove documents from the index")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(run=cmd_forget)

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

    p = sub.add_parser("ask", parents=[common], help="answer a question from the documents")
    p.add_argument("question")
    p.add_argument("-k", type=int, dest="top_k", help="number of chunks (RAG_TOP_K)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print answer, evidence, sources and stats as one JSON object",
    )
    p.set_defaults(run=cmd_ask)

    p = sub.add_parser("chat", parents=[common], help="an interactive chat with history")
    p.add_argument("--resume", metavar="ID", help="continue a stored chat (`rag chats list`)")
    p.add_argument("--user", default=None, help="whose chats (default: the local user)")
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("chats", parents=[common], help="stored chats: list, export, delete")
    chats_sub = p.add_subparsers(dest="action", required=True)
    p = chats_sub.add_parser("list", parents=[common], help="stored chats, newest first")
    p.add_argument("--user", default=None, help="whose chats (default: the local user)")
    p.add_argument("--all", action="store_true", help="every user's chats")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_chats_list)
    p = chats_sub.add_parser("export", parents=[common], help="a chat as Markdown with sources")
    p.add_argument("id")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    p.set_defaults(run=cmd_chats_export)
    p = chats_sub.add_parser(
        "delete", parents=[common], help="delete a chat with its messages and files"
    )
    p.add_argument("id")
    p.set_defaults(run=cmd_chats_delete)

    p = sub.add_parser(
        "summarize", parents=[common], help="summarise one whole indexed document (map-reduce)"
    )
    p.add_argument("path", help="the document: its path or file name as indexed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=cmd_summarize)

    p = sub.add_parser("sources", parents=[common], help="list indexed documents")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_sources)

    p = sub.add_parser(
        "check",
        parents=[common],
        help="check that Chroma, the documents table and the word index agree",
    )
    p.add_argument("--repair", action="store_true", help="repair what disagrees")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_check)

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

    p = sub.add_parser(
        "models", parents=[common], help="show each configured model: reachable? context window?"
    )
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("compare", help="the same retrieved context through several models, timed")
    p.add_argument("questions", nargs="+", metavar="QUESTION")
    p.add_argument("--index", type=Path, help="index folder (RAG_INDEX)")
    p.add_argument("--collection", help="Chroma collection (RAG_COLLECTION)")
    p.add_argument(
        "--llm",
        dest="models",
        action="append",
        required=True,
        metavar="SPEC",
        help="a model spec; give it once per model to compare",
    )
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser("user", help="manage who may log in to the app")
    user_sub = p.add_subparsers(dest="action", required=True)
    p = user_sub.add_parser(
        "add", parents=[common], help="add a user or set a new password (asked, or read from stdin)"
    )
    p.add_argument("name")
    p.set_defaults(run=cmd_user_add)
    p = user_sub.add_parser("remove", parents=[common], help="remove a user")
    p.add_argument("name")
    p.set_defaults(run=cmd_user_remove)
    p = user_sub.add_parser("list", parents=[common], help="list the users")
    p.set_defaults(run=cmd_user_list)
    p = user_sub.add_parser(
        "logout", parents=[common], help="end every session of a user, in every running app"
    )
    p.add_argument("name")
    p.set_defaults(run=cmd_user_logout)

    p = sub.add_parser("model", help="manage the chat model")
    model_sub = p.add_subparsers(dest="action", required=True)
    p = model_sub.add_parser(
        "prepare",
        parents=[common],
        help="build the embedded chat model and the ONNX embedder now (otherwise on first use)",
    )
    p.set_defaults(run=cmd_model_prepare)
    p = model_sub.add_parser(
        "download", parents=[common], help="download a known model (needs the internet)"
    )
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

    settings = settings.with_overrides(ocr=args.ocr)
    target = None if args.watch else discover(args.paths, exclude=[settings.index])
    library = open_library(settings)
    ingestor = Ingestor(library, private=args.private)
    if target is None:  # --watch: a path may appear later
        from ingest.watch import watch

        return watch(ingestor, args.paths, exclude=[settings.index])
    summary = ingestor.run(target, prune=args.prune)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.render())
    return summary.exit_code


def _store(settings: Settings, bring_in_step: bool = True):
    """The index alone, for commands that never embed: no model to load."""
    from rag.store import open_store

    return open_store(settings, bring_in_step=bring_in_step)


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
    from rag.retrieval import open_library, search

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


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag import evaluation
    from rag.retrieval import open_library

    questions = evaluation.load_questions(args.qa)
    variants = evaluation.variants(settings, args.variant)  # a typo fails before the model loads
    reports = evaluation.evaluate(open_library(settings), questions, variants)
    print(
        json.dumps(evaluation.as_dict(reports, args.failures), indent=2)
        if args.json
        else evaluation.render(reports, args.failures)
    )
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_ask(args.question, settings, as_json=args.json))


def _progress(done: int, total: int) -> None:
    if done < total:  # the last step is the answer itself, streamed to stdout
        print(f"summarising: step {done + 1} of {total}", file=sys.stderr, flush=True)


async def _ask(question: str, settings: Settings, as_json: bool = False) -> int:
    from rag.conversation import Conversation, Engine
    from rag.routing import ModelPool

    ModelPool(settings)  # checks every spec before the embedder loads
    conv = Conversation(Engine.open(settings))
    await _answer(conv, question, as_json)
    return 0


async def _answer(conv, question: str, as_json: bool = False) -> None:
    """One streamed answer of a conversation, then its notices, evidence and sources."""
    turn = await conv.prepare(question)
    turn.progress = _progress
    async for delta in conv.stream(turn):
        if not as_json:
            print(delta, end="", flush=True)
    if as_json:
        print(json.dumps(_turn_json(turn), indent=2))
        return
    print()
    if turn.looped:  # the terminal cannot take back what it printed: say what is kept
        print(f"\nWithout the repetition:\n{turn.text}")
    for notice in turn.notices():
        print(f"note: {notice}", file=sys.stderr)
    for claim in turn.unsupported:
        print(f"not in the passages: {claim.text}", file=sys.stderr)
    if turn.summary is not None:
        print(f"\nSummary of {turn.summary.source} ({turn.summarised} passages read)")
        return
    if turn.evidence:
        print("\nEvidence:")
        for item in turn.evidence:
            print(
                f'  "{" ".join(item.text.split())}"\n     {item.label()}, '
                f"characters {item.start}-{item.end}  ({item.source})"
            )
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    if shown:
        print("\nSources:" if cited else "\nRetrieved (not cited):")
    for n, hit in shown:
        print(f"  [{n}] {hit.chunk.label()}  ({hit.chunk.source})")


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_chat(settings, args.resume, args.user))


async def _chat(settings: Settings, resume: str | None, user: str | None) -> int:
    from rag.auth import LOCAL_USER
    from rag.conversation import Conversations, Engine
    from rag.routing import ModelPool

    ModelPool(settings)
    chats = Conversations(Engine.open(settings))
    user = user or LOCAL_USER
    conv = await (chats.open(resume, user) if resume else chats.create(user))
    try:
        print(
            f"Chat {conv.id} ({len(conv.history) // 2} earlier exchange(s)). Ask a question;"
            " /attach PATH adds a file to this chat; an empty line or Ctrl-D ends."
            f"\nContinue later with: rag chat --resume {conv.id}",
            flush=True,
        )
        while True:
            try:
                line = (await asyncio.to_thread(input, "\nyou> ")).strip()
            except EOFError:
                break
            if not line or line in ("/quit", "/exit"):
                break
            try:
                if line.startswith("/attach "):
                    path = Path(line.split(" ", 1)[1].strip()).expanduser()
                    await conv.save_thread(name=f"Files: {path.name}")
                    print(await conv.attach(path, path.name))
                else:
                    await _answer(conv, line)
            except RagError as exc:
                print(f"error: {exc}", file=sys.stderr)
    finally:
        conv.close()
        if chats.engine.store is not None:
            await chats.engine.store.close()
    return 0


def _chats_call(settings: Settings, call) -> Any:
    from rag.conversation import Conversations, Engine

    async def run():
        chats = Conversations(Engine(settings, live=None))  # no library: nothing is searched
        try:
            return await call(chats)
        finally:
            if chats.engine.store is not None:
                await chats.engine.store.close()

    return asyncio.run(run())


def cmd_chats_list(args: argparse.Namespace, settings: Settings) -> int:
    from rag.auth import LOCAL_USER

    user = None if args.all else (args.user or LOCAL_USER)
    rows = _chats_call(settings, lambda chats: chats.list(user))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r["id"],
                        "name": r["name"],
                        "user": r["user_identifier"],
                        "updated": r["updated_at"],
                    }
                    for r in rows
                ]
            )
        )
        return 0
    for r in rows:
        print(
            f"{r['id']}  {r['updated_at'][:16].replace('T', ' ')}  "
            f"{r['user_identifier'] or '-':10}  {r['name'] or ''}"
        )
    print(f"{len(rows)} chat(s)")
    return 0


def cmd_chats_export(args: argparse.Namespace, settings: Settings) -> int:
    text = _chats_call(settings, lambda chats: chats.export(args.id, user=None))
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def cmd_chats_delete(args: argparse.Namespace, settings: Settings) -> int:
    _chats_call(settings, lambda chats: chats.delete(args.id, user=None))
    print(f"deleted chat {args.id} with its messages and files")
    return 0


def _turn_json(turn) -> dict:
    st = turn.stats
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    return {
        "answer": turn.text,
        "evidence": [e.as_dict() for e in turn.evidence],
        "sources": [
            {
                "number": n,
                "cited": cited,
                "source": h.chunk.source,
                "page": h.chunk.page,
                "heading": h.chunk.heading,
                "start": h.chunk.start,
                "end": h.chunk.end,
            }
            for n, h in shown
        ],
        "unsupported": [c.as_dict() for c in turn.unsupported],
        "notices": turn.notices(),
        "model": turn.model,
        "stats": {
            "retrieval_ms": round(st.retrieval_ms, 1),
            "prompt_tokens": st.prompt_tokens,
            "first_token_s": None if st.first_token_s is None else round(st.first_token_s, 3),
            "answer_s": round(st.answer_s, 3),
            "answer_tokens": st.answer_tokens,
            "tokens_per_s": None if st.tokens_per_s is None else round(st.tokens_per_s, 2),
            "looped": turn.looped,
        },
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
        print(
            json.dumps(
                {
                    "source": request.source,
                    "summary": turn.text,
                    "passages": turn.summarised,
                    "model": turn.model,
                },
                indent=2,
            )
        )
    else:
        print(f"\n\n({turn.summarised} passages of {request.source} read by {turn.model})")
    return 0


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
            from rag.embeddings import create_embedder

            loaded.append(create_embedder(settings))
        return loaded[0].embed(texts)

    return embed


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


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from rag import limits, security
    from rag.routing import ModelPool
    from rag.server import create_app, describe, open_libraries

    key = security.serve_key(settings, args.api_key_file, args.api_key)
    security.check_bind(args.host, key, args.insecure_no_key)  # before anything loads
    pool = ModelPool(settings)
    names = args.collections or settings.serve_collections or [settings.collection]
    libraries = open_libraries(settings, names)
    app = create_app(settings, libraries, pool, api_key=key)
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
    from rag.conversation import Conversation, Engine
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
    conv = Conversation(Engine.open(settings))
    print(f"{'model':40} {'first token':>11} {'tokens/s':>9} {'tokens':>7} {'chars':>6}  question")
    for question in questions:
        turn = await conv.prepare(question)  # one retrieval for all models
        for spec, pool in pools.items():
            trial = conv.retry(turn)  # keeps the retrieval's verdict: off-topic stays so
            try:
                async for _ in conv.stream(trial, pool, remember=False):
                    pass
            except ModelUnavailable as exc:
                print(
                    f"{spec[:40]:40} {'failed':>11}  {trial.skipped[-1] if trial.skipped else exc}"
                )
                failed[spec] = str(exc)
                continue
            st = trial.stats
            rate = f"{st.tokens_per_s:.1f}" if st.tokens_per_s else "-"
            print(
                f"{(trial.model or spec)[:40]:40} {st.first_token_s or 0:10.2f}s {rate:>9} "
                f"{st.answer_tokens:7d} {len(trial.text):6d}  {question[:50]}"
            )
            cited, shown = trial.shown_sources(uncited=len(trial.context))
            if shown:
                print(
                    f"{'':40}   {'sources' if cited else 'retrieved'}: "
                    + "; ".join(f"[{n}] {h.chunk.label()}" for n, h in shown)
                )
    return 1 if failed else 0


def _read_password() -> str:
    """Asked twice on a terminal; otherwise the first line of stdin (for scripts)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise RagError("The two passwords differ; nothing changed.")
    return first


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from rag.users import Users, users_path

    users = Users(users_path(settings))
    new = users.add(args.name, _read_password())
    print(f"{'Added' if new else 'Changed the password of'} {args.name} ({users.path}).")
    return 0


def cmd_user_remove(args: argparse.Namespace, settings: Settings) -> int:
    from rag.users import Users, users_path

    if Users(users_path(settings)).remove(args.name):
        print(f"Removed {args.name}.")
        return 0
    print(f"There is no user {args.name}.", file=sys.stderr)
    return 1


def cmd_user_list(args: argparse.Namespace, settings: Settings) -> int:
    from rag.users import Users, users_path

    for name in Users(users_path(settings)).names():
        print(name)
    return 0


def cmd_user_logout(args: argparse.Namespace, settings: Settings) -> int:
    from rag.users import Users, users_path

    Users(users_path(settings)).logout(args.name)
    print(f"Every session of {args.name} has ended; the next request logs in again.")
    return 0


def cmd_model_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from rag.embeddings import create_embedder
    from rag.models.embedded import prepare_embedded_model

    folder = prepare_embedded_model(settings.cache_dir)
    print(f"Embedded model ready: {folder}")
    create_embedder(settings).prepare()  # the ONNX export of the embedding model
    print(f"Embedding model ready: {settings.embedding_model} ({settings.embedder})")
    return 0


def cmd_model_download(args: argparse.Namespace, settings: Settings) -> int:
    from rag.models.download import download

    folder = download(KNOWN_DOWNLOADS[args.name], settings.cache_dir)
    print(f"Downloaded {args.name} to {folder}\nUse it with: RAG_LLM=onnx:{folder}")
    return 0


class _TerminalSafe:
    """A text stream passing on what is written without escape sequences or control
    characters (rag/sanitize.py): file names, documents and answers reach the terminal
    through every print of every command, so the filter sits here, once."""

    def __init__(self, stream: Any, keep_cr: bool = False) -> None:
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

