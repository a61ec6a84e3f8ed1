"""The records of one answer: the turn on its way to an answer, its timings, and a
whole-document request. They import nothing above them, so the modules that fill a
turn (answering, checks, summaries) and those that show it can all name its types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rag.answers import citations, prompts, repetition
from rag.answers.contradictions import Contradiction
from rag.answers.evidence import Evidence
from rag.answers.grounding import Unsupported
from rag.embeddings.embedder import Embedder
from rag.library.chunks import Hit
from rag.library.live import Library
from rag.models.base import Message

Progress = Callable[[int, int], object]  # may be a coroutine function


@dataclass(frozen=True)
class Request:
    """A whole-document question, resolved to one document of one library."""

    library: Library
    source: str

    @property
    def name(self) -> str:
        return Path(self.source).name


@dataclass
class Stats:
    retrieval_ms: float = 0.0
    prompt_tokens: int = 0
    first_token_s: float | None = None
    answer_s: float = 0.0
    answer_tokens: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        streaming = self.answer_s - (self.first_token_s or 0.0)
        return self.answer_tokens / streaming if self.answer_tokens > 1 and streaming > 0 else None


@dataclass
class Turn:
    """A question on its way to an answer; ``text`` grows as the answer streams."""

    question: str
    hits: list[Hit]  # everything retrieved, best first
    history: list[Message] = field(default_factory=list)
    model: str = ""  # the model that answered
    spec: str = ""  # its spec (RAG_LLM form), e.g. "embedded"
    context: list[Hit] = field(default_factory=list)  # passages in the prompt, numbered from 1
    messages: list[Message] = field(default_factory=list)
    search_query: str = ""  # what retrieval looked for: the question, or it with context
    grounded: bool = True  # some passage is relevant enough to answer from
    withheld: int = 0  # private passages kept from a model off this machine
    withheld_turns: int = 0  # private earlier exchanges kept from a model off this machine
    private: bool = False  # the answer was made from private passages or private history
    skipped: list[str] = field(default_factory=list)  # models that failed before answering
    text: str = ""
    written_in: str = ""  # where, when not on the server: "this browser (WebGPU)" (#23)
    stopped: bool = False
    stats: Stats = field(default_factory=Stats)
    # Checks a reader can act on (rag/answers/checks.py): evidence after retrieval, the
    # rest once the answer is complete.
    evidence: list[Evidence] = field(default_factory=list)  # best first
    unsupported: list[Unsupported] = field(default_factory=list)  # in order
    contradicted: list[Contradiction] = field(default_factory=list)  # the evidence differs
    citations: list[citations.Citation] = field(default_factory=list)  # per sentence
    claims: list[tuple[int, int]] = field(default_factory=list)  # sentences that claim something
    lead_with_evidence: bool = False  # show the evidence sentence first (RAG_EVIDENCE_FIRST)
    looped: bool = False  # the answer began to repeat itself and was cut there
    embedder: Embedder | None = field(default=None, repr=False)  # the library's, for checks
    # A whole-document request (rag/answers/summaries.py): answered from all of its chunks.
    summary: Request | None = None
    summarised: int = 0  # chunks read for the summary
    progress: Progress | None = field(default=None, repr=False)  # callback(done, total)

    def notices(self) -> list[str]:
        """What the reader should know about how this answer was made."""
        said = list(self.skipped)
        if self.skipped:
            said.append(f"Answered by {self.model} instead.")
        if self.withheld:
            said.append(
                f"{self.withheld} passage(s) from private documents were withheld because "
                f"{self.model} does not run on this machine, so the answer had less context."
            )
        if self.withheld_turns:
            said.append(
                f"{self.withheld_turns} earlier exchange(s) about private documents were "
                f"withheld because {self.model} does not run on this machine."
            )
        if self.written_in:
            said.append(f"Written in {self.written_in}.")
        if self.stopped:
            said.append("Stopped before the end of the answer.")
        if self.looped:
            said.append(repetition.NOTICE)
        return said

    def cited_text(self) -> str:
        """The answer with the citations attributed after generation written in."""
        return citations.cited_text(self.text, self.citations)

    def sources(self) -> list[tuple[int, Hit]]:
        """The passages the answer cites (itself or by attribution), in citation order,
        numbered as in the prompt."""
        numbers = prompts.cited_numbers(self.cited_text(), len(self.context))
        return [(n, self.context[n - 1]) for n in numbers]

    def shown_sources(self, uncited: int = 3) -> tuple[bool, list[tuple[int, Hit]]]:
        """What to show under the answer: the cited passages or, when the model cited
        none (small models often forget), the best ones it was given."""
        cited = self.sources()
        return bool(cited), cited or list(enumerate(self.context, start=1))[:uncited]
