"""``rag ask``, ``chat``, ``summarize`` and ``compare``: answers from a chat model."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.cli.base import AddCommand, Subcommands
from rag.config import Settings
from rag.errors import ModelUnavailable, RagError

if TYPE_CHECKING:  # imported where a command runs: they load the library and the models
    from rag.answers.turn import Turn
    from rag.conversations.conversation import Conversation


def _add_ask(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ask", parents=[common], help="answer a question from the documents")
    p.add_argument("question")
    p.add_argument("-k", type=int, dest="top_k", help="number of chunks (RAG_TOP_K)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print answer, evidence, sources and stats as one JSON object",
    )
    _add_reader(p)
    p.set_defaults(run=cmd_ask)


def _add_reader(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--user",
        default=None,
        help="answer as this user, from the libraries they may read (default: the "
        "machine's own account, which reads every library)",
    )


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_ask(args.question, settings, as_json=args.json, user=args.user))


def _progress(done: int, total: int) -> None:
    if done < total:  # the last step is the answer itself, streamed to stdout
        print(f"summarising: step {done + 1} of {total}", file=sys.stderr, flush=True)


async def _ask(
    question: str, settings: Settings, as_json: bool = False, user: str | None = None
) -> int:
    from rag.conversations.conversation import Conversation, Engine
    from rag.library.access import Reader
    from rag.models.routing import ModelPool

    ModelPool(settings)  # checks every spec before the embedder loads
    conv = Conversation(Engine.open(settings), reader=Reader(user))
    await _answer(conv, question, as_json)
    return 0


async def _answer(conv: Conversation, question: str, as_json: bool = False) -> None:
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
    wrong = {c.start for c in turn.contradicted}
    for contradicted in turn.contradicted:
        print(f"contradicted: {contradicted.text} ({contradicted.note()})", file=sys.stderr)
    for claim in turn.unsupported:
        if claim.start not in wrong:
            print(f"not in the passages: {claim.text}", file=sys.stderr)
    if any(c.attributed for c in turn.citations):
        print(f"\nWith citations: {turn.cited_text()}")
    if turn.summary is not None:
        print(f"\nSummary of {turn.summary.source} ({turn.summarised} passages read)")
        return
    if turn.lead_with_evidence and turn.evidence:
        print(f'\nFrom your document (a quote): "{" ".join(turn.evidence[0].text.split())}"')
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
        print(f"  {_named(n, hit)}  ({hit.chunk.source})")


def _named(n: int, hit: Any) -> str:
    """A source as the app names it: number, label and the library it came from (#24)."""
    library = hit.chunk.extra.get("library")
    return f"[{n}] {hit.chunk.label()}" + (f" · {library}" if library else "")


def _turn_json(turn: Turn) -> dict[str, Any]:
    st = turn.stats
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    return {
        "answer": turn.cited_text(),  # as shown: with the citations attributed
        "model_answer": turn.text,  # as the model wrote it
        "leads_with": "evidence" if turn.lead_with_evidence else "answer",
        "contradicted": [c.as_dict() for c in turn.contradicted],
        "citations": [c.as_dict() for c in turn.citations],
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
                "library": h.chunk.extra.get("library"),
            }
            for n, h in shown
        ],
        "unsupported": [c.as_dict() for c in turn.unsupported],
        "notices": turn.notices(),
        "model": turn.model,
        "summary": turn.summary.source if turn.summary is not None else None,
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


def _add_chat(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("chat", parents=[common], help="an interactive chat with history")
    p.add_argument("--resume", metavar="ID", help="continue a stored chat (`rag chats list`)")
    p.add_argument("--user", default=None, help="whose chats (default: the local user)")
    p.set_defaults(run=cmd_chat)


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_chat(settings, args.resume, args.user))


async def _chat(settings: Settings, resume: str | None, user: str | None) -> int:
    from rag.conversations.conversation import Engine
    from rag.conversations.records import LOCAL_USER
    from rag.conversations.stored_chats import Conversations
    from rag.library.access import Reader
    from rag.models.routing import ModelPool

    ModelPool(settings)
    chats = Conversations(Engine.open(settings))
    reader = Reader(user)  # a user named reads their libraries; else the owner, every one
    user = user or LOCAL_USER
    conv = await (
        chats.open(resume, user, reader=reader) if resume else chats.create(user, reader=reader)
    )
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


def _add_summarize(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "summarize", parents=[common], help="summarise one whole indexed document (map-reduce)"
    )
    p.add_argument("path", help="the document: its path or file name as indexed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_reader(p)
    p.set_defaults(run=cmd_summarize)


def cmd_summarize(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_summarize(args.path, settings, args.json, args.user))


async def _summarize(path: str, settings: Settings, as_json: bool, user: str | None) -> int:
    from rag.answers import answering as chat
    from rag.answers import summaries
    from rag.conversations.conversation import Engine
    from rag.library.access import Reader
    from rag.models.routing import ModelPool

    pool = ModelPool(settings)
    shelf = Engine.open(settings).shelf
    libraries = await asyncio.to_thread(shelf.readable, Reader(user))
    request = await asyncio.to_thread(summaries.locate_in, libraries, path)
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


def _add_compare(sub: Subcommands, common: argparse.ArgumentParser) -> None:
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


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_compare(args.questions, args.models, settings))


async def _compare(questions: list[str], specs: list[str], settings: Settings) -> int:
    from rag.conversations.conversation import Conversation, Engine
    from rag.models.routing import ModelPool

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
                    + "; ".join(_named(n, h) for n, h in shown)
                )
    return 1 if failed else 0


COMMANDS: dict[str, AddCommand] = {
    "ask": _add_ask,
    "chat": _add_chat,
    "summarize": _add_summarize,
    "compare": _add_compare,
}
