"""Citations attributed after generation: each answer sentence gets the [n] of the
passage that supports it best.

Small models often cite nothing, most of all with the evidence note in the prompt.
Every answer sentence is scored against each passage it was given with the same
support score the unsupported-sentence test uses (grounding.judge: best cosine
similarity to one of the passage's sentences + 0.5 × the share of the sentence's
content words found in that passage). A sentence that cites no passage itself
gets the number of the best one when that score reaches
``Settings.unsupported_below``; a sentence marked unsupported or contradicted
gets none, so no number vouches for it. What the model cited stays as it wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.answers import prompts
from rag.answers.grounding import Judged
from rag.library.chunks import Hit

# Where a citation goes in a sentence: before its closing punctuation and quotes.
_SENTENCE_END = re.compile(r"[.!?:;…]*[\"'”’)\]]*$")


@dataclass(frozen=True)
class Citation:
    """Passage numbers (as in the prompt) for one answer sentence (offsets in the text)."""

    start: int
    end: int
    numbers: tuple[int, ...]
    attributed: bool  # True when added after generation, False when the model wrote it

    def as_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "passages": list(self.numbers),
            "attributed": self.attributed,
        }


def attribute(
    answer: str,
    judged: Sequence[Judged],
    context: Sequence[Hit],
    marked: set[int],
) -> list[Citation]:
    """The citation of each sentence of ``answer``; ``marked`` holds the start offsets
    of sentences marked unsupported or contradicted. Any other sentence that claims
    something passed the support check, so it cites the passage that supports it best:
    no passage alone may reach the threshold (the check also counts words found across
    passages), and a sentence neither cited nor marked would leave the reader unsure."""
    numbers = {h.chunk.id: n for n, h in enumerate(context, start=1)}
    found = []
    for j in judged:
        own = prompts.cited_numbers(answer[j.start : j.end], len(context))
        if own:
            found.append(Citation(j.start, j.end, tuple(own), False))
            continue
        if not j.reason or j.start in marked or not j.by_chunk:
            continue
        scores = j.by_chunk
        best_id = max(
            (cid for cid in scores if cid in numbers), key=lambda c: scores[c], default=None
        )
        if best_id is not None:
            found.append(Citation(j.start, j.end, (numbers[best_id],), True))
    return found


def insertion_point(answer: str, start: int, end: int) -> int:
    """Where an added "[n]" goes in a sentence: before its final punctuation."""
    tail = _SENTENCE_END.search(answer[start:end])
    return start + tail.start() if tail else end


def cited_text(answer: str, citations: Sequence[Citation]) -> str:
    """The answer with the attributed citations written in, as a reader sees it."""
    out, last = [], 0
    for c in sorted((c for c in citations if c.attributed), key=lambda c: c.start):
        at = insertion_point(answer, c.start, c.end)
        out.append(answer[last:at] + " " + "".join(f"[{n}]" for n in c.numbers))
        last = at
    out.append(answer[last:])
    return "".join(out)
