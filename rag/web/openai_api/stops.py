"""``stop`` sequences, applied to any model's text stream.

Backends need not know about them: the stream is cut at the first sequence (which
is not sent, as with OpenAI), and the caller closes the model's stream, which
stops generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence


class StopCut:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hit = False  # a stop sequence ended the text
        self.text = ""  # what was passed on

    def _first_stop(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return min(found) if found else None

    async def apply(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        # A sequence may arrive split over deltas: hold back a tail that could start one.
        hold = max((len(s) for s in self.stops), default=1) - 1
        pending = ""
        async for delta in stream:
            pending += delta
            cut = self._first_stop(pending)
            if cut is not None:
                self.hit = True
                if pending[:cut]:
                    self.text += pending[:cut]
                    yield pending[:cut]
                return
            ready = len(pending) - hold
            if ready > 0:
                out, pending = pending[:ready], pending[ready:]
                self.text += out
                yield out
        if pending:
            self.text += pending
            yield pending
