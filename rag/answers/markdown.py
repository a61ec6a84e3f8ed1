"""How an answer's checks read in Markdown: evidence sentences, the passage with
the sentence highlighted, and marks on the sentences no passage supports.

The browser app shows these strings; nothing here knows Chainlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag.answers.evidence import Evidence
from rag.library.chunks import Hit

if TYPE_CHECKING:  # the turn is only read here; the answering pipeline is not needed
    from rag.answers.turn import Turn

UNSUPPORTED_MARK = " *(not found in the passages)*"


def _quote(text: str) -> str:
    return " ".join(text.split()).replace("*", r"\*").replace("_", r"\_")


def evidence_name(number: int, item: Evidence) -> str:
    """The link text that opens the passage: unique per answer."""
    return f"Evidence {number}: {item.label()}"


def evidence_block(evidence: Sequence[Evidence]) -> str:
    """The best sentences verbatim, each with where it comes from and a link name."""
    if not evidence:
        return ""
    rows = ["**Evidence from your documents:**"]
    for n, item in enumerate(evidence, start=1):
        rows.append(f"> “{_quote(item.text)}” — {evidence_name(n, item)}")
    return "\n".join(rows)


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


def mark_unsupported(answer: str, unsupported: Sequence) -> str:
    """The answer with a mark after each sentence that no passage supports."""
    out, last = [], 0
    for claim in sorted(unsupported, key=lambda c: c.start):
        out.append(answer[last : claim.end] + UNSUPPORTED_MARK)
        last = claim.end
    out.append(answer[last:])
    return "".join(out)


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
    """The whole answer as shown once complete: the text (a loop cut off), marks on
    unsupported sentences, the notices, then the evidence sentences."""
    parts = [mark_unsupported(turn.text, turn.unsupported)]
    notices = turn.notices()
    if turn.unsupported:
        notices.append(unsupported_notice(turn.unsupported))
    if turn.summary is not None:
        notices.append(
            f"Summary of the whole of {turn.summary.name} ({turn.summarised} passages read)."
        )
    if notices:
        parts.append("\n".join(f"> {n}" for n in notices))
    if turn.evidence:
        parts.append(evidence_block(turn.evidence))
    return "\n\n".join(p for p in parts if p)
