"""How a conversation reads as text: the retrieval report, the sources line, the
welcome, and a whole chat exported as Markdown. Shared by the app and the CLI."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rag.answers import markdown
from rag.answers.turn import Turn
from rag.conversations import uploads
from rag.conversations.records import Entry, entries_from_steps
from rag.library.chunks import Hit
from rag.sanitize import safe_label, safe_markdown


def origin(hit: Hit) -> str:
    return "this chat's files" if hit.chunk.extra.get("origin") == uploads.ORIGIN else "library"


def retrieval_report(turn: Turn) -> str:
    """Every retrieved passage with its scores and origin, then the timings."""
    rows = [f"Searched for: *{turn.search_query}*", ""]
    if not turn.hits:
        rows.append("Nothing relevant found.")
    for hit in turn.hits:
        sim = f"{hit.similarity:.3f}" if hit.similarity is not None else "-"
        rows.append(
            f"{hit.rank}. {safe_label(hit.chunk.label())} — score {hit.score:.3f}, "
            f"similarity {sim}, from {origin(hit)}"
        )
    st = turn.stats
    timing = [f"retrieval {st.retrieval_ms:.0f} ms"]
    if st.first_token_s is not None:
        timing.append(f"first token {st.first_token_s:.2f} s")
    if st.tokens_per_s:
        timing.append(f"{st.tokens_per_s:.1f} tokens/s")
    rows += ["", " · ".join(timing) + (f" · model {turn.model}" if turn.model else "")]
    return "\n".join(rows)


def sources_line(turn: Turn) -> tuple[str, list[tuple[int, Hit]]]:
    """The sources line after an answer, and the passages to show (the cited ones or,
    when none is cited, all it was given: as every door shows)."""
    cited, shown = turn.shown_sources(uncited=len(turn.context))
    if not shown:
        return "", shown
    heading = "Sources" if cited else "Retrieved passages (the answer cites none)"
    names = ", ".join(passage_name(n, h) for n, h in shown)
    return f"\n\n**{heading}:** {names}", shown


def passage_name(n: int, hit: Hit) -> str:
    """A source as the app names it: its number, its label and the library it came from
    (none for the chat's own files)."""
    library = hit.chunk.extra.get("library")
    where = f" · {safe_label(str(library))}" if library else ""
    return f"[{n}] {safe_label(hit.chunk.label())}{where}"


def welcome(
    documents: int, private: int, model: str | None, problem: str | None, fallback: bool
) -> str:
    where = (
        f"your {documents} indexed document{'s' if documents != 1 else ''}"
        if documents
        else "your documents, once you add some with `rag ingest PATH`"
    )
    if private:  # sticky: they stay private until `rag ingest --shareable`
        where += (
            f" ({private} private: never sent to a model off this machine; "
            "`rag sources` lists them)"
        )
    if model:
        by = f"Answers come from **{model}** with the passages they cite."
    else:
        by = f"**The chosen model is not available:** {problem}"
        if fallback:
            by += " Questions go to the fallback models meanwhile."
    return (
        f"Hello! Ask me about {where}, or attach a file ({uploads.FORMATS}) to ask about it. {by}"
    )


def export_markdown(
    thread: dict, entries: Sequence[Entry] | None = None, readable: Collection[str] | None = None
) -> str:
    """The chat as Markdown: each question, each answer and the passages it cites; from
    ``entries`` (a live chat's own history) when given, else from the stored steps. A
    passage of a library not in ``readable`` (what the reader may read now; None: every
    one) is withheld: the chat may predate a revoke (#24)."""
    lines = [
        f"# {thread.get('name') or 'Chat'}",
        "",
        f"Chat `{thread['id']}`, started {thread.get('createdAt', '')}.",
        "",
    ]
    if entries is None:
        entries = entries_from_steps(thread.get("steps") or [])
    for entry in entries:
        if entry.role == "user":
            lines += [f"## {entry.content.strip()}", ""]
            continue
        lines += [entry.content.strip(), ""]
        if entry.sources:
            heading = "Sources" if entry.sources[0].get("cited") else "Retrieved passages"
            lines += [f"**{heading}:**", ""]
            for s in entry.sources:
                library = s.get("library")
                if readable is not None and library and library not in readable:
                    lines.append(f"- [{s['n']}] withheld: library {library} is not readable")
                    continue
                quote = " ".join(str(s.get("text", "")).split())
                lines.append(f"- [{s['n']}] {s['label']} (`{s['source']}`)")
                if library:
                    lines.append(f"  from the library {library}")
                if quote:
                    lines.append(f"  > {quote}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def passage_text(turn: Turn, hit: Hit) -> str:
    """One passage as its panel shows it: the best evidence sentence it holds in bold."""
    held = next((e for e in turn.evidence if e.chunk_id == hit.chunk.id), None)
    return markdown.highlighted_passage(held, [hit]) if held else hit.chunk.text


def finished(turn: Turn) -> tuple[str, list[tuple[str, str]]]:
    """A whole answer as the app shows it, made safe to render: the checked text (a loop
    cut, unsupported sentences marked, evidence quoted) and its sources line; then the
    side passages as (name, Markdown): the cited ones, and each evidence sentence's
    passage with the sentence highlighted."""
    sources, shown = sources_line(turn)
    passages = [(passage_name(n, h), safe_markdown(passage_text(turn, h))) for n, h in shown]
    passages += [
        (
            safe_label(markdown.evidence_name(n, e)),
            safe_markdown(markdown.highlighted_passage(e, turn.hits)),
        )
        for n, e in enumerate(turn.evidence, start=1)
    ]
    return safe_markdown(markdown.finished(turn)) + sources, passages
