"""How an answer's checks read in Markdown: evidence sentences, the passage with
the sentence highlighted, and marks on the sentences no passage supports.

The browser app shows these strings; nothing here knows Chainlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag.answers import citations
from rag.answers.evidence import Evidence
from rag.library.chunks import Hit

if TYPE_CHECKING:  # the turn is only read here; the answering pipeline is not needed
    from rag.answers.turn import Turn

UNSUPPORTED_MARK = " *(not found in the passages)*"
QUOTE_HEADING = "**From your document** (a quote, not the model's words):"
MODEL_HEADING = "**The model's answer**"
WHY_LED = {
    "contradicted": "contradicted by the quote above: rely on the quote",
    "unusable": "no sentence of it is found in the passages",
    "always": "check it against the quote",
}


def _quote(text: str) -> str:
    return " ".join(text.split()).replace("*", r"\*").replace("_", r"\_")


def evidence_name(number: int, item: Evidence) -> str:
    """The link text that opens the passage: unique per answer."""
    return f"Evidence {number}: {item.label()}"


def evidence_block(evidence: Sequence[Evidence], leading: int | None = None) -> str:
    """The best sentences verbatim, each with where it comes from and a link name;
    the one at index ``leading`` is left out (it is shown above the answer)."""
    rows = [
        f"> “{_quote(item.text)}” — {evidence_name(n, item)}"
        for n, item in enumerate(evidence, start=1)
        if n - 1 != leading
    ]
    return "\n".join(["**Evidence from your documents:**", *rows]) if rows else ""


def leading_evidence(turn: Turn) -> int:
    """Which evidence sentence leads: the one a contradiction quotes, else the best."""
    quoted = {c.evidence for c in turn.contradicted}
    return next((i for i, e in enumerate(turn.evidence) if " ".join(e.text.split()) in quoted), 0)


def why_led(turn: Turn) -> str:
    if turn.contradicted:
        return WHY_LED["contradicted"]
    if not turn.citations:  # nothing in it found in the passages
        return WHY_LED["unusable"]
    return WHY_LED["always"]


def lead_block(turn: Turn) -> str:
    """The evidence sentence as the answer, labelled as a quote from the document."""
    n = leading_evidence(turn)
    item = turn.evidence[n]
    return f"{QUOTE_HEADING}\n\n> “{_quote(item.text)}” — {evidence_name(n + 1, item)}"


def highlighted_passage(item: Evidence, hits: Sequence[Hit]) -> str:
    """The passage that holds ``item``, the sentence in bold, with its location."""
    hit = next((h for h in hits if h.chunk.id == item.chunk_id), None)
    if hit is None:
        return f"**{_quote(item.text)}**"
    text = hit.chunk.text
    a, b = item.start - hit.chunk.start, item.end - hit.chunk.start
    if not (0 <= a < b <= len(text)) or text[a:b] != item.text:
        return f"**{_quote(item.text)}**\n\n{text}"
    where = f"{item.label()}, characters {item.start}–{item.end}"
    return f"{text[:a]}**{text[a:b]}**{text[b:]}\n\n*{where}*"


def contradicted_mark(says: str) -> str:
    return f" *(contradicted: your document says “{_quote(says)}”)*"


def mark_unsupported(answer: str, unsupported: Sequence, contradicted: Sequence = ()) -> str:
    """The answer with a mark after each sentence that no passage supports or that
    the evidence contradicts."""
    return annotated(answer, [], unsupported, contradicted)


def annotated(
    answer: str,
    cited: Sequence[citations.Citation],
    unsupported: Sequence,
    contradicted: Sequence = (),
) -> str:
    """The answer as shown: attributed citations written in, then a mark after each
    contradicted or unsupported sentence (offsets are all in ``answer``)."""
    inserts: list[tuple[int, int, str]] = []  # (offset, order, text)
    for c in cited:
        if c.attributed:
            at = citations.insertion_point(answer, c.start, c.end)
            inserts.append((at, 0, " " + "".join(f"[{n}]" for n in c.numbers)))
    wrong = {c.start for c in contradicted}
    for c in contradicted:
        inserts.append((c.end, 1, contradicted_mark(c.says)))
    for u in unsupported:
        if u.start not in wrong:
            inserts.append((u.end, 1, UNSUPPORTED_MARK))
    out, last = [], 0
    for at, _, text in sorted(inserts):
        out.append(answer[last:at] + text)
        last = at
    out.append(answer[last:])
    return "".join(out)


def contradicted_notice(contradicted: Sequence) -> str:
    if not contradicted:
        return ""
    first = contradicted[0]
    return (
        f"The answer contradicts your document: it says “{_quote(first.says)}” "
        f"({first.source.rsplit('/', 1)[-1]})."
    )


def unsupported_notice(unsupported: Sequence) -> str:
    if not unsupported:
        return ""
    n = len(unsupported)
    return (
        f"{n} sentence{'s' if n != 1 else ''} of this answer {'are' if n != 1 else 'is'} "
        "not supported by the passages (marked): check before relying on "
        f"{'them' if n != 1 else 'it'}."
    )


def progress(turn: Turn, done: int, total: int) -> str:
    """A line streamed while a whole document is summarised; ``finished`` replaces it."""
    if turn.summary is None or done >= total:  # only a summary reports steps
        return ""
    return f"*Reading {turn.summary.name}: step {done} of {total}…*\n\n"


def waiting(place: int) -> str:
    """A line streamed while the question waits in line for its model (place 1 is
    next); ``finished`` replaces it."""
    return f"*Waiting for the model: place {place} in line…*\n\n"


def finished(turn: Turn) -> str:
    """The whole answer as shown once complete: the evidence sentence first when it
    leads, the text (a loop cut off, citations attributed, marks on contradicted and
    unsupported sentences), the notices, then the evidence sentences."""
    body = annotated(turn.text, turn.citations, turn.unsupported, turn.contradicted)
    leading = turn.lead_with_evidence and bool(turn.evidence)
    parts = (
        [lead_block(turn), f"{MODEL_HEADING} ({why_led(turn)}):\n\n{body}"] if leading else [body]
    )
    notices = turn.notices()
    if turn.contradicted:
        notices.append(contradicted_notice(turn.contradicted))
    unsupported = [
        u for u in turn.unsupported if u.start not in {c.start for c in turn.contradicted}
    ]
    if unsupported:
        notices.append(unsupported_notice(unsupported))
    if turn.summary is not None:
        notices.append(
            f"Summary of the whole of {turn.summary.name} ({turn.summarised} passages read)."
        )
    if notices:
        parts.append("\n".join(f"> {n}" for n in notices))
    if turn.evidence:
        parts.append(evidence_block(turn.evidence, leading_evidence(turn) if leading else None))
    return "\n\n".join(p for p in parts if p)
