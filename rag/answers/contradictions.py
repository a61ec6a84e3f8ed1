"""Answer sentences that the evidence contradicts: a number or a name that the
document gives differently for the thing asked about.

"The hotel limit in London is 180 euros." passes the support test: 180 euros is
in the passages, only not for London. So each answer sentence is also compared
with the sentences it is about: the best evidence sentence for the question and
the passage sentence closest to it (grounding.judge). Numbers are read with their
unit (the word after them: "180 euros", "2,000 eggs"; a bare four-digit number is
a year) and with the stretch of the sentence around them, up to the numbers on
either side. Where the evidence holds several numbers of the same unit, the one
meant is the one whose stretch names what the answer or the question names
(a capitalised name such as "London"); where it holds one, that one is meant.
An answer number that differs from every number meant, and is confirmed by no
compared sentence, marks the sentence contradicted, with the evidence's own words
("260 euros in London, Paris, Tokyo and New York"). A "who" question answered
with a name the passages never mention, where the evidence names someone, is a
contradiction too. Cheap and offline: regular expressions and the embeddings the
support test already made. Calibrated on benchmarks/qa/contradictions.jsonl
(``python -m benchmarks.answers --contradictions``; figures in the README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.answers import evidence
from rag.answers.grounding import Judged

# Numbers written as words ("eight percent", "nineteen mills").
_WORD_NUMBERS = {
    w: n
    for n, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "  # noqa: SIM905
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80}
# A number (thousands separators, decimals, or a word), a currency sign before it, and
# the word after it as its unit ("180 euros", "5 hours", "30%").
_QUANTITY = re.compile(
    r"(?P<sign>[€$£¥])?\s?(?<![\w.,])(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|"
    r"(?i:\b(?:" + "|".join(_WORD_NUMBERS) + r")\b))"
    r"(?![\w,]\d)(?:\s?(?:(?:such|more|or\s+so|in\s+all)\s+)?(?P<unit>%|[A-Za-z]+))?"
)
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:(?:von|van|de|da|del|der|of)\s+)?[A-Z][a-z]+)*")
_NOT_UNITS = evidence.STOPWORDS
_SAME_UNIT = {"percent": "%", "per": "%"}
_SIGNS = {"€": "euro", "$": "dollar", "£": "pound", "¥": "yen"}


@dataclass(frozen=True)
class Sentence:
    """A sentence of a passage and its document."""

    text: str
    source: str


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str
    start: int  # of the number in its sentence
    end: int  # after its unit
    text: str  # as written, with its unit


@dataclass(frozen=True)
class Contradiction:
    """A sentence of the answer (offsets in the answer's text) and what the document
    says instead."""

    text: str
    start: int
    end: int
    says: str  # the evidence's own words for the thing asked about
    evidence: str  # the whole evidence sentence
    source: str  # its document

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "says": self.says,
            "evidence": self.evidence,
            "source": self.source,
        }

    def note(self) -> str:
        return f"your document says “{self.says}”"


def _unit(match: re.Match) -> str:
    number = match.group("number")
    if number.isdigit() and len(number) == 4 and 1000 <= int(number) <= 2100:
        return "year"  # "in 1886 after", "1987 by": a year whatever follows
    if match.group("sign"):
        return _SIGNS[match.group("sign")]
    word = (match.group("unit") or "").lower()
    if word in _NOT_UNITS:
        return ""
    if word.endswith("s") and len(word) > 3 and not word.endswith("ss"):
        word = word[:-1]
    return _SAME_UNIT.get(word, word)


def quantities(sentence: str) -> list[Quantity]:
    """The numbers of a sentence with their units ("" when none: "49 are known")."""
    found = []
    for m in _QUANTITY.finditer(sentence):
        unit = _unit(m)
        worded = unit and m.group("unit") and unit != "year" and not m.group("sign")
        end = m.end() if worded else m.end("number")
        number = m.group("number")
        value = float(
            _WORD_NUMBERS.get(number.lower(), 0) if number.isalpha() else number.replace(",", "")
        )
        found.append(Quantity(value, unit, m.start(), end, sentence[m.start() : end].strip()))
    return found


def _stretch(sentence: str, items: Sequence[Quantity], i: int) -> str:
    """The sentence around quantity ``i``: from the end of the one before to the start
    of the one after, so that "180 euros in most cities and 260 euros in London"
    gives London to 260 only."""
    begin = items[i - 1].end if i > 0 else 0
    end = items[i + 1].start if i + 1 < len(items) else len(sentence)
    return sentence[begin:end]


def _names(text: str) -> set[str]:
    """Capitalised words, the first word of a sentence included (the test is whether
    a stretch of the evidence holds one the answer or question names)."""
    words = {w.lower() for m in _NAME.finditer(text) for w in m.group().split()}
    return words - evidence.STOPWORDS


def _after(sentence: str, items: Sequence[Quantity], i: int) -> set[str]:
    """The content words after quantity ``i``, up to the next one ("180 euros in most
    cities and"): English puts what a number counts after it."""
    end = items[i + 1].start if i + 1 < len(items) else len(sentence)
    return {w for w in evidence.content_words(sentence[items[i].end : end]) if not w[0].isdigit()}


def _meant(
    sentence: str, unit: str, anchors: set[str], words: set[str]
) -> list[tuple[Quantity, str]]:
    """The quantities of ``sentence`` in ``unit`` that are about what the answer names:
    a name in ``anchors`` near them, else a content word of ``words`` after them, else
    the only one in that unit. A number with no unit stands in when none has the unit
    and the words after it are the answer's ("49 are known to survive")."""
    items = quantities(sentence)
    same = [i for i, q in enumerate(items) if q.unit == unit]
    if not same and unit:
        same = [i for i, q in enumerate(items) if not q.unit and _after(sentence, items, i) & words]
    if len(same) > 1:
        stretches = {i: _names(_stretch(sentence, items, i)) for i in same}
        shared = set.intersection(*stretches.values())
        named = [i for i in same if (stretches[i] - shared) & anchors]
        if not named:
            after = {i: _after(sentence, items, i) for i in same}
            common = set.intersection(*after.values())
            named = [i for i in same if (after[i] - common) & words]
        same = named
    return [(items[i], _stretch(sentence, items, i)) for i in same]


def _says(sentence: str, quantity: Quantity, stretch: str) -> str:
    """The evidence's words for a quantity: from the number to the end of its stretch."""
    at = stretch.find(quantity.text)
    words = stretch[at:] if at >= 0 else quantity.text
    words = re.split(r"(?<=[a-z])[;:]|\s+and\s+(?=\S+\s+\d)", words)[0]
    return " ".join(words.split()).rstrip(".,;: ")


def _number_contradiction(
    plain: str, question: str, compared: Sequence[Sentence]
) -> tuple[str, Sentence] | None:
    items = quantities(plain)
    for i, q in enumerate(items):
        own = _names(_stretch(plain, items, i))
        if not q.unit:
            continue  # a bare "3" may count anything
        single = sum(1 for x in items if x.unit == q.unit) == 1
        anchors = own | (_names(question) if single else set())
        words = _after(plain, items, i) | (
            evidence.content_words(question) | evidence.content_words(plain) if single else set()
        )
        words = {w for w in words if not w[0].isdigit() and w != q.unit}
        differs = None
        for candidate in compared:
            meant = _meant(candidate.text, q.unit, anchors, words)
            if any(m.value == q.value for m, _ in meant):
                differs = None
                break  # a sentence the answer is about says the same
            # An answer that also gives the document's figure in that unit restates
            # the evidence ("180 euros in most cities and 260 euros in London").
            given = {x.value for x in items if x.unit == q.unit}
            if meant and differs is None and _about(plain, candidate.text):
                m, stretch = meant[0]
                if m.value not in given:
                    differs = (_says(candidate.text, m, stretch), candidate)
        if differs is not None:
            return differs
    return None


def _about(answer_sentence: str, sentence: str) -> bool:
    """Whether two sentences speak of the same thing: they share a content word that
    is not a number."""
    words = {w for w in evidence.content_words(answer_sentence) if not w[0].isdigit()}
    return bool(words & evidence.content_words(sentence))


def _name_contradiction(
    plain: str, question: str, top: Sentence | None, passage_words: set[str]
) -> tuple[str, Sentence] | None:
    if top is None or not _asks_who(question):
        return None
    asked = _names(question)
    # A capitalised word opening the sentence is a name only with another after it.
    said = [m.group() for m in _NAME.finditer(plain) if m.start() > 0 or " " in m.group()]
    unknown = [n for n in said if not {w.lower() for w in n.split()} <= passage_words | asked]
    named = [m.group() for m in _NAME.finditer(top.text) if not _names(m.group()) <= asked]
    if unknown and named:
        return ", ".join(dict.fromkeys(named)), top
    return None


def _asks_who(question: str) -> bool:
    return bool(re.search(r"\b(who|whom|whose)\b", question, re.IGNORECASE))


def find(
    answer: str,
    question: str,
    judged: Sequence[Judged],
    top: Sequence[Sentence],
    passage_text: str,
) -> list[Contradiction]:
    """The sentences of ``answer`` that the evidence contradicts. ``judged`` are its
    sentences with their closest passage sentence; ``top`` the best evidence sentences
    for the question."""
    passage_words = {w.lower() for w in re.findall(r"\w+", passage_text)}
    found = []
    for j in judged:
        if not j.reason:
            continue
        closest = [Sentence(j.closest.text, j.closest.chunk.source)] if j.closest else []
        compared = list(dict.fromkeys([*top, *closest]))
        hit = _number_contradiction(j.plain, question, compared) or _name_contradiction(
            j.plain, question, top[0] if top else None, passage_words
        )
        if hit is not None:
            says, where = hit
            found.append(
                Contradiction(
                    answer[j.start : j.end],
                    j.start,
                    j.end,
                    says,
                    " ".join(where.text.split()),
                    where.source,
                )
            )
    return found
