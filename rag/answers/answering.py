"""One question, answered: retrieve, build the prompt, stream the model's answer.

The browser app, the CLI and the HTTP API call these functions; nothing here
knows how the answer is shown.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import replace

from rag.answers import checks as answer_checks
from rag.answers import prompts, summaries
from rag.answers.turn import Turn
from rag.config import Settings
from rag.errors import ModelUnavailable
from rag.library import search as retrieval
from rag.library.chunks import Hit
from rag.models.base import ChatModel, Message, aclose
from rag.models.routing import ModelPool

_CONNECTIVE = re.compile(r"^\W*(and|also|but|so|then|or|what about|how about)\b", re.IGNORECASE)
_REFERRING = re.compile(
    r"\b(it|its|that|this|these|those|they|them|there|he|she|his|her|same)\b", re.IGNORECASE
)


def search_query(question: str, history: Sequence[Message]) -> str:
    """What to search for. A follow-up ("and on Windows?", "what does it cost?") means
    little alone, so it is searched together with the previous question."""
    earlier = [m["content"] for m in history if m["role"] == "user"]
    follow_up = _CONNECTIVE.search(question) or (
        len(question.split()) <= 10 and _REFERRING.search(question)
    )
    return f"{earlier[-1]} {question}" if earlier and follow_up else question


def recent(history: Sequence[Message], turns: int) -> list[Message]:
    """The last ``turns`` exchanges (a question and its answer each)."""
    return list(history[-2 * turns :]) if turns else []


def search_everywhere(
    libraries: Sequence[retrieval.Library], query: str, settings: Settings
) -> list[Hit]:
    """One ranked list from several libraries (the shared one, a chat's uploads).

    Each library fuses its own rankings; across libraries only the cosine
    similarity is comparable (same embedding model), so it decides the order."""

    def options(lib: retrieval.Library) -> Settings:
        # A path filter names documents of the shared library, not a chat's own files.
        shared = lib.settings.index == settings.index
        return settings if shared else settings.with_overrides(sources=[])

    if not libraries:
        return []
    [vector] = libraries[0].embedder.embed([query])  # same embedder everywhere
    found = [
        _from(h, lib.settings.collection if lib.settings.index == settings.index else None)
        for lib in libraries
        for h in retrieval.search_by_vector(lib, query, vector, settings.top_k, options(lib))
    ]
    if len(libraries) > 1:
        found.sort(
            key=lambda h: h.similarity if h.similarity is not None else h.score, reverse=True
        )
    return [replace(h, rank=r) for r, h in enumerate(found[: settings.top_k], start=1)]


def _from(hit: Hit, library: str | None) -> Hit:
    """The hit, saying which library it came from (None: the chat's own files)."""
    if library is None:
        return hit
    return replace(hit, chunk=replace(hit.chunk, extra={**hit.chunk.extra, "library": library}))


async def prepare(
    question: str,
    library: retrieval.Library | Sequence[retrieval.Library],
    settings: Settings,
    history: Sequence[Message] = (),
) -> Turn:
    libraries = [library] if isinstance(library, retrieval.Library) else list(library)
    request = await asyncio.to_thread(summaries.find, question, libraries)
    if request is not None:
        return Turn(question, [], search_query=question, summary=request)
    history = recent(history, settings.history_turns)
    query = search_query(question, history)
    started = time.perf_counter()
    # Embedding and the Chroma query are blocking calls: keep them off the event loop.
    hits = await asyncio.to_thread(search_everywhere, libraries, query, settings)
    turn = Turn(question, hits, history, search_query=query, embedder=libraries[0].embedder)
    turn.stats.retrieval_ms = (time.perf_counter() - started) * 1000
    best = max((h.similarity for h in hits if h.similarity is not None), default=None)
    turn.grounded = bool(hits) and (best is None or best >= settings.min_similarity)
    if not turn.grounded:
        turn.hits = []  # nothing relevant: passages would only mislead the model
    await answer_checks.find_evidence(turn, settings)
    return turn


def shareable(hits: Sequence[Hit], model: ChatModel) -> tuple[list[Hit], int]:
    """The passages this model may see: private documents never leave the machine."""
    if model.local:
        return list(hits), 0
    kept = [h for h in hits if not h.chunk.extra.get("private")]
    return kept, len(hits) - len(kept)


def shareable_history(history: Sequence[Message], model: ChatModel) -> tuple[list[Message], int]:
    """The earlier messages this model may see, as plain role and content.

    A message marked ``private`` (a question answered from private documents, or
    that answer) stays on this machine; returns the messages and how many
    exchanges were withheld."""
    kept = [m for m in history if model.local or not m.get("private")]
    dropped = [m["role"] for m in history if not model.local and m.get("private")]
    withheld = max(dropped.count("user"), dropped.count("assistant"))
    return [{"role": m["role"], "content": m["content"]} for m in kept], withheld


NOT_FOUND = "I could not find this in your documents."
GENERAL = (
    NOT_FOUND + " Here is a general answer from the model, **not based on your documents**:\n\n"
)


def _address(turn: Turn, model: ChatModel, settings: Settings) -> None:
    """Fit the prompt to ``model``: its privacy, then its context window."""
    allowed, turn.withheld = shareable(turn.hits, model)
    history, turn.withheld_turns = shareable_history(turn.history, model)
    budget = model.context_window - settings.max_answer_tokens
    if turn.grounded:
        turn.messages, turn.context = prompts.fit_to_budget(
            turn.question, allowed, history, budget, model.count_tokens
        )
        answer_checks.point_to_evidence(turn, settings, model.count_tokens, budget)
    else:
        turn.messages, turn.context = prompts.general_messages(turn.question, history), []
    # Privacy follows the data: what was written from private text is private too.
    turn.private = any(h.chunk.extra.get("private") for h in turn.context) or any(
        m.get("private") for m in turn.history if model.local
    )
    turn.model = model.name
    turn.stats.prompt_tokens = sum(model.count_tokens(m["content"]) for m in turn.messages)


async def _start(
    turn: Turn, pool: ModelPool, settings: Settings
) -> tuple[ChatModel, AsyncIterator[str], str]:
    """The first model that produces a first token, with that token and its stream."""
    for spec in pool.candidates(turn.question):
        try:
            model = await asyncio.to_thread(pool.load, spec)
            _address(turn, model, settings)
            turn.spec = spec
            stream = answer_checks.guarded(
                turn,
                model.stream(
                    turn.messages,
                    max_tokens=settings.max_answer_tokens,
                    temperature=settings.temperature,
                    **answer_checks.decoding(settings),
                ),
                settings,
            )
            try:
                return model, stream, await anext(stream)
            except StopAsyncIteration:
                return model, stream, ""
            except BaseException:
                await aclose(stream)
                raise
        except ModelUnavailable as exc:
            # Before the first token nothing was shown, so another model can take over.
            turn.skipped.append(f"{spec}: {exc}")
    raise ModelUnavailable("No model could answer. " + " ".join(turn.skipped))


async def stream_answer(
    turn: Turn, pool: ModelPool, settings: Settings
) -> AsyncGenerator[str, None]:
    """Yield the answer's text deltas, recording text, model and timings on ``turn``.
    Stopped anywhere (its task cancelled, or closed by its reader), the turn is
    marked stopped: it is partial, or its checks are."""
    deltas = _answer(turn, pool, settings)
    try:
        async for delta in deltas:
            yield delta
    except (asyncio.CancelledError, GeneratorExit):
        turn.stopped = True
        raise
    finally:
        await deltas.aclose()


async def _answer(turn: Turn, pool: ModelPool, settings: Settings) -> AsyncGenerator[str, None]:
    if turn.summary is not None:
        async for delta in summaries.stream_turn(turn, pool, settings):
            turn.text += delta
            yield delta
        return
    if not turn.grounded:
        turn.text = GENERAL if settings.off_topic == "general" else NOT_FOUND
        yield turn.text
        if settings.off_topic == "refuse":
            return
    started = time.perf_counter()
    model, stream, first = await _start(turn, pool, settings)
    try:
        delta = first
        while True:
            if delta:
                if turn.stats.first_token_s is None:
                    turn.stats.first_token_s = time.perf_counter() - started
                turn.text += delta
                yield delta
            delta = await anext(stream)
    except StopAsyncIteration:
        pass
    finally:
        await aclose(stream)
        turn.stats.answer_s = time.perf_counter() - started
        turn.stats.answer_tokens = model.count_tokens(turn.text) if turn.text else 0
    await answer_checks.check(turn, settings)


async def ask(
    question: str,
    library: retrieval.Library,
    pool: ModelPool,
    settings: Settings,
    history: Sequence[Message] = (),
) -> Turn:
    """The whole answer at once, for scripts and tests."""
    turn = await prepare(question, library, settings, history)
    async for _ in stream_answer(turn, pool, settings):
        pass
    return turn
