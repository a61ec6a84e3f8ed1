"""Chainlit handlers for Local RAG Chat: ``chainlit run app.py``.

Only the browser's side lives here; retrieval, prompts and models are in ``rag``.
"""

import asyncio
from dataclasses import dataclass, field

import chainlit as cl
from chainlit.input_widget import Slider, Switch, TextInput

from rag import answer_markdown, chat, store, uploads
from rag.chunks import Hit
from rag.config import Settings
from rag.errors import RagError
from rag.freshness import LiveLibrary
from rag.library import Library, open_library
from rag.models.spec import label
from rag.routing import ModelPool


@dataclass
class Shared:
    """What every chat of this process shares: settings, the library, loaded models."""

    settings: Settings
    live: LiveLibrary
    pools: dict = field(default_factory=dict)  # profile spec -> its pool
    models: dict = field(default_factory=dict)  # spec -> loaded model, shared by all pools

    def pool(self, spec: str) -> ModelPool:
        """The chosen profile's model first, then the configured fallbacks."""
        if spec not in self.pools:
            rest = [s for s in self.settings.llm_fallback if s != spec]
            chosen = self.settings.with_overrides(llm=spec, llm_fallback=rest)
            self.pools[spec] = ModelPool(chosen, loaded=self.models)
        return self.pools[spec]


_shared: Shared | None = None
_loading = asyncio.Lock()


def _load() -> Shared:
    settings = Settings()
    res = Shared(settings, LiveLibrary(open_library(settings)))
    try:
        res.pool(settings.llm).load(settings.llm)  # the first question should not wait
    except RagError:
        pass  # said in the welcome; a fallback may still answer
    return res


async def shared() -> Shared:
    """Loaded once per process, on the first chat."""
    global _shared
    async with _loading:
        if _shared is None:
            _shared = await asyncio.to_thread(_load)
    return _shared


def _profiles(settings: Settings) -> list[str]:
    return list(dict.fromkeys([settings.llm, *settings.llm_fallback]))


@cl.set_chat_profiles
async def profiles(user=None, language=None):
    specs = _profiles(Settings())
    if len(specs) < 2:
        return None  # one model: nothing to choose
    return [cl.ChatProfile(name=label(s), markdown_description=f"`RAG_LLM={s}`") for s in specs]


def _chosen_spec(settings: Settings) -> str:
    name = cl.user_session.get("chat_profile")
    return next((s for s in _profiles(settings) if label(s) == name), settings.llm)


@cl.on_chat_start
async def start() -> None:
    try:
        res = await shared()
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    spec = _chosen_spec(res.settings)
    cl.user_session.set("spec", spec)
    cl.user_session.set("history", [])
    cl.user_session.set("options", res.settings)
    await cl.ChatSettings([
        Slider(id="top_k", label="Passages per answer", initial=res.settings.top_k,
               min=1, max=12, step=1),
        Slider(id="temperature", label="Temperature", initial=res.settings.temperature,
               min=0, max=1.5, step=0.1),
        Switch(id="use_library", label="Search the library (off: only this chat's files)",
               initial=True),
        TextInput(id="sources", label="Only documents matching (globs, comma-separated)",
                  initial=""),
    ]).send()
    library = await asyncio.to_thread(res.live.current)
    counts = await asyncio.to_thread(store.source_counts, library.collection)
    where = (f"your {len(counts)} indexed document{'s' if len(counts) != 1 else ''}" if counts
             else "your documents, once you add some with `rag ingest PATH`")
    try:
        model = await asyncio.to_thread(res.pool(spec).load, spec)
        by = f"Answers come from **{model.name}** with the passages they cite."
    except RagError as exc:
        by = f"**The chosen model is not available:** {exc}"
        if res.settings.llm_fallback:
            by += " Questions go to the fallback models meanwhile."
    await cl.Message(
        content=f"Hello! Ask me about {where}, or attach a PDF, Markdown or text file to ask "
        f"about it. {by}"
    ).send()


@cl.on_settings_update
async def update_settings(values: dict) -> None:
    base = (await shared()).settings
    globs = [g.strip() for g in str(values.get("sources") or "").split(",") if g.strip()]
    cl.user_session.set("options", base.with_overrides(
        top_k=int(values["top_k"]), temperature=float(values["temperature"]), sources=globs))
    cl.user_session.set("use_library", bool(values.get("use_library", True)))


@cl.on_chat_end
async def end() -> None:
    chat_uploads = cl.user_session.get("uploads")
    if chat_uploads is not None:
        await asyncio.to_thread(uploads.discard, chat_uploads)


async def _take_uploads(message: cl.Message, res: Shared) -> None:
    """Files attached to the message go into this chat's own private library."""
    files = [e for e in message.elements if getattr(e, "path", None)]
    if not files:
        return
    chat_uploads = cl.user_session.get("uploads")
    if chat_uploads is None:
        chat_uploads = await asyncio.to_thread(
            uploads.create, res.settings, res.live.library.embedder)
        cl.user_session.set("uploads", chat_uploads)
    for f in files:
        report = await asyncio.to_thread(uploads.add, chat_uploads, f.path, f.name)
        await cl.Message(content=report, author="Library").send()


async def _libraries(res: Shared) -> list[Library]:
    found = []
    if cl.user_session.get("use_library", True):
        found.append(await asyncio.to_thread(res.live.current))  # sees `rag ingest` runs
    chat_uploads = cl.user_session.get("uploads")
    if chat_uploads is not None:
        found.append(chat_uploads.library)
    return found


def _origin(hit: Hit) -> str:
    return "this chat's files" if hit.chunk.extra.get("origin") == uploads.ORIGIN else "library"


def _retrieval_report(turn: chat.Turn) -> str:
    rows = [f"Searched for: *{turn.search_query}*", ""]
    if not turn.hits:
        rows.append("Nothing relevant found.")
    for hit in turn.hits:
        sim = f"{hit.similarity:.3f}" if hit.similarity is not None else "-"
        rows.append(f"{hit.rank}. {hit.chunk.label()} — score {hit.score:.3f}, "
                    f"similarity {sim}, from {_origin(hit)}")
    st = turn.stats
    timing = [f"retrieval {st.retrieval_ms:.0f} ms"]
    if st.first_token_s is not None:
        timing.append(f"first token {st.first_token_s:.2f} s")
    if st.tokens_per_s:
        timing.append(f"{st.tokens_per_s:.1f} tokens/s")
    rows += ["", " · ".join(timing) + (f" · model {turn.model}" if turn.model else "")]
    return "\n".join(rows)


def _source_elements(turn: chat.Turn) -> tuple[str, list[cl.Text]]:
    """Cited passages in citation order; with no citation, the best retrieved ones."""
    cited, shown = turn.shown_sources()
    elements = [
        cl.Text(name=f"[{n}] {hit.chunk.label()}", content=hit.chunk.text, display="side")
        for n, hit in shown
    ] + [cl.Text(name=answer_markdown.evidence_name(n, e), display="side",
                 content=answer_markdown.highlighted_passage(e, turn.hits))
         for n, e in enumerate(turn.evidence, start=1)]
    heading = "Sources" if cited else "Retrieved passages (the answer cites none)"
    return heading, elements


async def _finish(reply: cl.Message, turn: chat.Turn) -> None:
    # The answer as checked: a loop cut off, unsupported sentences marked.
    reply.content = answer_markdown.finished(turn)
    if turn.context:
        heading, reply.elements = _source_elements(turn)
        reply.content += f"\n\n**{heading}:** " + ", ".join(
            e.name for e in reply.elements if not e.name.startswith("Evidence"))
    await reply.send()


@cl.on_message
async def answer(message: cl.Message) -> None:
    try:
        res = await shared()
        await _take_uploads(message, res)
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    if not message.content.strip():
        return  # files only: they were announced above
    options = cl.user_session.get("options") or res.settings
    history = cl.user_session.get("history") or []
    libraries = await _libraries(res)
    if not libraries:
        await cl.Message(content="The library is switched off and this chat has no files: "
                         "attach a file or switch the library on in the settings.").send()
        return
    step = cl.Step(name="Retrieval", type="retrieval")
    turn = await chat.prepare(message.content, libraries, options, history)
    step.input, step.output = turn.search_query, _retrieval_report(turn)
    await step.send()
    reply = cl.Message(content="")
    turn.progress = lambda done, total: reply.stream_token(
        answer_markdown.progress(turn, done, total))
    try:
        async for delta in chat.stream_answer(turn, res.pool(cl.user_session.get("spec")),
                                              options):
            await reply.stream_token(delta)
    except RagError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    except asyncio.CancelledError:
        await _finish(reply, turn)  # the partial answer stays, marked as stopped
        raise
    finally:
        step.output = _retrieval_report(turn)  # now with the answer's timings
        await step.update()
    # Only whole answers become history: a failed or stopped one is nothing to build on.
    history += [{"role": "user", "content": message.content},
                {"role": "assistant", "content": turn.text}]
    cl.user_session.set("history", history)
    await _finish(reply, turn)
