"""Stopping an answer that has started to repeat itself.

Small models at low temperature fall into loops ("the House of the House of the
House ...") and would go on until the token limit. The test is cheap and runs on
every delta: an answer loops when the word n-gram it has just written already
occurred ``repeats - 1`` times before. That catches a short phrase repeated back
to back and a whole sentence written again and again alike. The answer is then
cut where the repeated part began the second time, so the reader sees each
thing once, and the stream is closed, which stops the model.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from rag.models.base import aclose

# Five words repeated three times: measured on benchmarks.answers, no answer that ends
# on its own trips it, and a loop is caught within a few dozen words.
NGRAM = 5
REPEATS = 3

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")

NOTICE = "Stopped a repeating answer: the repeated part is not shown."


@dataclass
class LoopGuard:
    """Follows an answer's text; ``looped`` once it repeats, ``kept`` what to show."""

    ngram: int = NGRAM
    repeats: int = REPEATS
    text: str = ""
    looped: bool = False
    kept: str = ""
    _words: list[tuple[str, int]] = field(default_factory=list)  # (word, offset in text)
    _scanned: int = 0  # text before this offset has been split into whole words
    _seen: dict[tuple[str, ...], list[int]] = field(default_factory=dict)  # n-gram -> starts

    def feed(self, delta: str) -> bool:
        """Add a delta; True when the answer now loops (``kept`` is then set)."""
        if self.looped:
            return True
        self.text += delta
        for match in _WORD.finditer(self.text, self._scanned):
            if match.end() == len(self.text):
                break  # the word may go on in the next delta
            self._words.append((match.group().lower(), match.start()))
            self._scanned = match.end()
            if self._repeats():
                return True
        return False

    def _repeats(self) -> bool:
        start = len(self._words) - self.ngram
        if start < 0:
            return False
        gram = tuple(w for w, _ in self._words[start:])
        starts = self._seen.setdefault(gram, [])
        starts.append(start)
        if len(starts) < self.repeats:
            return False
        self.looped = True
        self.kept = self._cut(self._words[starts[0]][1], self._words[starts[1]][1])
        return True

    def _cut(self, first: int, second: int) -> str:
        """The text up to where the repetition began its second time, or up to the
        last sentence end after its first time, so whole sentences are kept."""
        ends = [m.end() for m in _SENTENCE_END.finditer(self.text, first, second)]
        cut = ends[-1] if ends else second
        return self.text[:cut].rstrip(" ,;:-\u2014\n")


async def stop_loops(
    stream: AsyncIterator[str], on_loop: Callable[[LoopGuard], None]
) -> AsyncIterator[str]:
    """The deltas of ``stream`` until the text loops; then ``on_loop(guard)`` and the end.

    Deltas already passed on may hold the start of the repetition: whoever shows
    the answer replaces it with ``guard.kept`` (``on_loop`` is the moment to do so)."""
    guard = LoopGuard()
    try:
        async for delta in stream:
            if guard.feed(delta):
                shown = len(guard.text) - len(delta)
                if len(guard.kept) > shown:
                    yield guard.kept[shown:]
                on_loop(guard)
                return
            yield delta
    finally:
        await aclose(stream)  # stops the model's generation
