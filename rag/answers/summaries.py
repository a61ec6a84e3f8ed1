"""Whole-document questions: "summarize this file", "main points of report.pdf".

Top-k passages cannot summarise a document, so such a request reads all of its
chunks, in order, map-reduce style: consecutive chunks are packed into parts
that fit the model's context budget (counted as rag/answers/prompts.py fit_to_budget
counts it), each part is summarised, and the part summaries are combined the
same way until one fits; the last combination streams as the answer. A
progress callback hears (done, total) after each step.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from rag.answers import checks, prompts
from rag.answers.turn import Progress, Request, Turn
from rag.config import Settings
from rag.errors import ModelUnavailable, RagError
from rag.library.chunks import Chunk
from rag.library.live import Library
from rag.models.base import ChatModel, Message
from rag.models.routing import ModelPool

_ASKS = re.compile(
    r"\b(summari[sz]e|summary|sum up|main points|key points|key takeaways|tl;?dr|"
    r"overview of|gist of|what is (this|the) (file|document|pdf|report) about)\b",
    re.IGNORECASE,
)
_THIS = re.compile(
    r"\b(this|the|my|that|attached|uploaded) (file|document|doc|pdf|report|paper|"
    r"article|text)\b",
    re.IGNORECASE,
)
_FILE_NAME = re.compile(r"[\w.\-]+\.(pdf|md|markdown|txt|text|rst|html?|docx)\b", re.IGNORECASE)

MAP_PROMPT = (
    "Summarise this part of the document {name} in a few short bullet points. "
    "Keep names, numbers and dates exactly as written.\n\n{text}"
)
REDUCE_PROMPT = (
    "These are summaries of consecutive parts of the document {name}. Combine "
    "them into one summary of its main points, as short bullet points.\n\n{text}"
)
SYSTEM = "You summarise documents faithfully, using only the text given."
PART_TOKENS = 160  # the answer budget of each part summary


def document_chunks(library: Library, source: str) -> list[Chunk]:
    """Every chunk of one document, in reading order (the documents table knows
    which version is complete)."""
    found = library.store.document_chunks(source)
    return sorted(found, key=lambda c: (c.page or 0, c.index))


def _sources(library: Library) -> list[str]:
    return list(library.store.documents())


def requested(question: str) -> bool:
    return bool(_ASKS.search(question))


def find(question: str, libraries: Sequence[Library]) -> Request | None:
    """The document a summary request is about, or None when it is no such request
    or names no document we can tell (blocking: reads the store).

    A named file ("report.pdf") is looked up in every library; "this file" means
    the chat's own upload when it has exactly one document, else the only document
    of all."""
    if not requested(question):
        return None
    named = _FILE_NAME.search(question)
    everything = [(lib, s) for lib in libraries for s in _sources(lib)]
    if named:
        wanted = named.group().strip().lower()
        matches = [(lib, s) for lib, s in everything if Path(s).name.lower() == wanted]
        matches = matches or [(lib, s) for lib, s in everything if wanted in Path(s).name.lower()]
        return Request(*matches[0]) if matches else None
    if not _THIS.search(question):
        return None
    for lib in reversed(list(libraries)):  # a chat's uploads come after the shared library
        own = _sources(lib)
        if len(own) == 1 and lib is not libraries[0]:
            return Request(lib, own[0])
    return Request(*everything[0]) if len(everything) == 1 else None


def locate(library: Library, path: str) -> Request:
    """The indexed document a command line names: a path, or a file name."""
    sources = _sources(library)
    full = str(Path(path).expanduser().resolve())
    for source in sources:
        if source == full:
            return Request(library, source)
    named = [s for s in sources if Path(s).name == Path(path).name]
    if len(named) == 1:
        return Request(library, named[0])
    if named:
        raise RagError(
            f"{len(named)} indexed documents are named {Path(path).name}: give the whole path."
        )
    raise RagError(f"{path} is not in the index: add it with `rag ingest {path}`.")


def locate_in(libraries: Sequence[Library], path: str) -> Request:
    """``locate`` in the first of ``libraries`` (those its reader may read) holding it."""
    for library in libraries:
        try:
            return locate(library, path)
        except RagError as exc:
            if "is not in the index" not in str(exc):
                raise
    raise RagError(
        f"{path} is in none of the libraries you may read: add it with `rag ingest {path}`."
    )


def _messages(template: str, name: str, text: str) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": template.format(name=name, text=text)},
    ]


def _size(messages: Sequence[Message], model: ChatModel) -> int:
    return prompts.prompt_size(messages, model.count_tokens)


def pack(
    texts: Sequence[str], template: str, name: str, model: ChatModel, budget: int
) -> list[str]:
    """Consecutive texts joined into as few parts as fit ``budget`` with the prompt.
    A single text over the budget is cut to fit rather than dropped."""

    def size(joined: list[str]) -> int:
        return _size(_messages(template, name, "\n\n".join(joined)), model)

    parts: list[str] = []
    current: list[str] = []
    for text in texts:
        current.append(text)
        tokens = size(current)
        if tokens > budget and len(current) > 1:  # the part is full: start the next
            parts.append("\n\n".join(current[:-1]))
            current = [text]
            tokens = size(current)
        while tokens > budget:
            current[-1] = current[-1][: int(len(current[-1]) * 0.8)]
            tokens = size(current)
    if current:
        parts.append("\n\n".join(current))
    return parts


async def _complete(
    model: ChatModel, messages: Sequence[Message], max_tokens: int, settings: Settings
) -> str:
    text = ""
    async for delta in model.stream(
        messages,
        max_tokens=max_tokens,
        temperature=settings.temperature,
        **checks.decoding(settings),
    ):
        text += delta
    return text.strip()


async def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        result = progress(done, total)
        if inspect.isawaitable(result):
            await result


async def summarise(
    chunks: Sequence[Chunk],
    name: str,
    model: ChatModel,
    settings: Settings,
    progress: Progress | None = None,
) -> AsyncIterator[str]:
    """The summary's text deltas; every chunk is read (map), then combined (reduce)."""
    budget = model.context_window - settings.max_answer_tokens
    texts = [c.text.strip() for c in chunks if c.text.strip()]
    template = MAP_PROMPT
    # Packing tokenizes every chunk: off the event loop, like every blocking step.
    parts = await asyncio.to_thread(pack, texts, template, name, model, budget)
    total = len(parts) + 1 if len(parts) > 1 else 1  # the final answer counts as a step
    done = 0
    await _report(progress, done, total)
    while len(parts) > 1:
        summaries = []
        for part in parts:
            summaries.append(
                await _complete(model, _messages(template, name, part), PART_TOKENS, settings)
            )
            done += 1
            await _report(progress, done, total)
        template = REDUCE_PROMPT
        previous = len(parts)
        parts = await asyncio.to_thread(pack, summaries, template, name, model, budget)
        if len(parts) >= previous:  # summaries too long to combine: keep what fits
            joined = ["\n\n".join(summaries)]
            parts = await asyncio.to_thread(pack, joined, template, name, model, budget)
        total = done + len(parts) + (0 if len(parts) == 1 else 1)
    final = _messages(template, name, parts[0] if parts else "")
    async for delta in model.stream(
        final,
        max_tokens=settings.max_answer_tokens,
        temperature=settings.temperature,
        **checks.decoding(settings),
    ):
        yield delta
    await _report(progress, total, total)


async def stream_turn(turn: Turn, pool: ModelPool, settings: Settings) -> AsyncIterator[str]:
    """Answer ``turn`` (whose ``summary`` is set) with a summary of the whole document,
    by the first model that loads; ``turn.progress`` hears each step."""
    request = turn.summary
    assert request is not None, "stream_turn answers a turn whose summary is set"
    chunks = await asyncio.to_thread(document_chunks, request.library, request.source)
    if not chunks:
        raise RagError(f"{request.name} has no text in the index to summarise.")
    model = None
    for spec in pool.candidates(turn.question):
        try:
            model = await asyncio.to_thread(pool.load, spec)
            break
        except ModelUnavailable as exc:
            turn.skipped.append(f"{spec}: {exc}")
    if model is None:
        raise ModelUnavailable("No model could answer. " + " ".join(turn.skipped))
    if not model.local and any(c.extra.get("private") for c in chunks):
        raise RagError(
            f"{request.name} is private and {model.name} does not run on this "
            "machine: choose a local model to summarise it."
        )
    turn.model = model.name
    turn.summarised = len(chunks)
    async for delta in summarise(chunks, request.name, model, settings, turn.progress):
        yield delta
