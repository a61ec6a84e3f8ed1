"""A chat model whose answers are written in the user's own browser (#23).

The server still retrieves and builds the prompt; it turns the prompt into token ids
with the model's own chat template and tokenizer, hands them to the chat's page, and
turns the token ids the page generates back into text. So the page runs only the
network (ONNX Runtime Web, WebGPU or WASM), and the answer flows through the same
pipeline as any other: loop guard, checks, sources, history.

The default web model is the embedded model itself (the same weights, the same
``model.onnx.data``): ``rag model prepare`` writes a copy of its small graph file whose
8-bit matrix products accumulate in fp32 (``accuracy_level`` 0; the CPU build asks for
int8 activations, level 4), which WebGPU runs three times faster and which is why a
browser's answer can differ from the server's by a token now and then, and whose logits
are those of the last few positions only (the page never reads the others).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.errors import ModelUnavailable
from rag.models.base import ChatModel, Message
from rag.models.browser_jobs import MESSAGE, PROVIDERS, Job, Link
from rag.models.embedded import EMBEDDED_MODEL_NAME, prepare_embedded_model
from rag.models.routing import ModelPool

BROWSER = "browser"  # the browser's place in a chat's pool (not a spec a person writes)
if TYPE_CHECKING:  # loaded with the first browser answer, not on import
    from jinja2 import Template
    from onnx import GraphProto, ModelProto
    from tokenizers import Tokenizer

# "-2": the graph computes the logits of its last LOGIT_ROWS positions only (the first
# web copy computed them for every prompt token), so an older copy is not reused.
WEB_DIR = "smollm2-135m-instruct-int8-web-2"
# The page checks up to this many tokens a run (browser_llm.js, WIDTH); after the prompt it
# needs one row: the other rows' lm_head products and read-back cost about a fifth of the
# prompt's time on a software GPU (83 s against 106 s) and tens of MB per answer.
LOGIT_ROWS = 8
_LINKED = ("model.onnx.data", "genai_config.json", "tokenizer.json", "tokenizer_config.json")
_LINKED_OPTIONAL = ("chat_template.jinja",)
# Seconds the page may stay silent: the first answer waits for the model's download and
# the prompt's evaluation (minutes on a software GPU); after that, one token at a time.
FIRST_WAIT_S = 600.0
NEXT_WAIT_S = 120.0


def web_model_dir(settings: Settings) -> Path:
    """The folder the browser's model is served from."""
    if settings.browser_model is not None:
        return settings.browser_model.expanduser()
    return Path(settings.cache_dir) / "models" / WEB_DIR


def prepare_web_model(settings: Settings, log: Callable[[str], None] = print) -> Path:
    """The web copy of the embedded model (made once), or ``RAG_BROWSER_MODEL`` checked."""
    folder = web_model_dir(settings)
    if settings.browser_model is not None:
        WebModel(folder)  # says what is missing
        return folder
    source = prepare_embedded_model(settings.cache_dir, log)
    if (folder / "model.onnx").is_file():
        return folder
    import onnx  # installed with the embedded model's build packages

    work = folder.with_name(f".{folder.name}-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    onnx.save(web_graph(source / "model.onnx"), str(work / "model.onnx"))
    for name in (*_LINKED, *_LINKED_OPTIONAL):
        if (source / name).is_file():  # the same weights and tokenizer: linked, not copied
            (work / name).symlink_to(source / name)
    try:
        os.rename(work, folder)
    except OSError:  # another process made it first
        for item in work.iterdir():
            item.unlink()
        work.rmdir()
    log(f"Browser model ready: {folder}")
    return folder


def web_graph(path: Path, rows: int | None = LOGIT_ROWS) -> ModelProto:
    """The embedded model's graph as the browser runs it (its weights stay in the file
    beside it): fp32 accumulation, and logits for the last ``rows`` positions only."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    for node in graph.graph.node:
        for attribute in node.attribute:
            if node.op_type == "MatMulNBits" and attribute.name == "accuracy_level":
                attribute.i = 0  # fp32 accumulation: what WebGPU runs fastest
    if rows is not None:
        _last_rows_only(graph.graph, "logits", rows)
    return graph


def _last_rows_only(graph: GraphProto, output: str, rows: int) -> None:
    """Slice the hidden states before the layer that makes ``output`` to the last ``rows``
    positions (all of them when there are fewer), so the graph computes only those."""
    from onnx import TensorProto, helper

    [head] = [node for node in graph.node if output in node.output]
    names = [f"/web/last_rows/{part}" for part in ("starts", "ends", "axes", "output_0")]
    for name, value in zip(names[:3], (-rows, 2**62, 1), strict=True):
        graph.initializer.append(helper.make_tensor(name, TensorProto.INT64, [1], [value]))
    cut = helper.make_node("Slice", [head.input[0], *names[:3]], [names[3]], name="/web/last_rows")
    head.input[0] = names[3]
    graph.node.insert(list(graph.node).index(head), cut)
    [shape] = [o.type.tensor_type.shape for o in graph.output if o.name == output]
    shape.dim[1].dim_param = "last_rows"


@dataclass(frozen=True)
class WebFile:
    name: str
    path: Path


class WebModel:
    """An ONNX Runtime GenAI model folder as the browser runs it: the graph, its
    weights, the shapes of its key-value cache; the tokenizer stays on the server."""

    def __init__(self, folder: Path) -> None:
        config_file = folder / "genai_config.json"
        if not config_file.is_file():
            hint = (
                "run `rag model prepare`" if folder.name == WEB_DIR else "check RAG_BROWSER_MODEL"
            )
            raise ModelUnavailable(f"No browser model in {folder} (no genai_config.json): {hint}.")
        config = json.loads(config_file.read_text(encoding="utf-8"))["model"]
        decoder = config["decoder"]
        self.folder = folder
        self.graph = str(decoder.get("filename") or "model.onnx")
        data = f"{self.graph}.data"
        self.data = data if (folder / data).is_file() else None
        self.context_window = int(config["context_length"])
        eos = config.get("eos_token_id")
        self.eos = eos if isinstance(eos, list) else [eos]
        self.shapes = {
            "layers": int(decoder["num_hidden_layers"]),
            "kv_heads": int(decoder["num_key_value_heads"]),
            "head_size": int(decoder["head_size"]),
        }
        self.name = EMBEDDED_MODEL_NAME if folder.name == WEB_DIR else folder.name
        # Rows of logits a run gives: the web copy's last LOGIT_ROWS; other models, all.
        self.rows = LOGIT_ROWS if folder.name == WEB_DIR else None

    def files(self) -> dict[str, Path]:
        """What the page may download, by name: nothing else in the folder is served."""
        names = [self.graph, *([self.data] if self.data else [])]
        return {name: self.folder / name for name in names}

    @cached_property
    def version(self) -> str:
        """Changes when a file does, so the browser's cached copy is replaced."""
        stats = [(n, p.stat().st_size, p.stat().st_mtime_ns) for n, p in self.files().items()]
        return hashlib.sha256(repr(stats).encode()).hexdigest()[:16]

    def manifest(self, base: str) -> dict:
        """What the page needs to load and run the model."""
        return {
            "name": self.name,
            "version": self.version,
            "graph": self.graph,
            "data": self.data,
            "base": base,
            "rows": self.rows,
            **self.shapes,
        }

    @cached_property
    def _tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.folder / "tokenizer.json"))

    @cached_property
    def _template(self) -> Template:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        config = json.loads((self.folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        jinja = self.folder / "chat_template.jinja"
        text = config.get("chat_template") or (
            jinja.read_text(encoding="utf-8") if jinja.is_file() else ""
        )
        if not text:
            raise ModelUnavailable(f"The browser model in {self.folder} has no chat template.")
        return ImmutableSandboxedEnvironment().from_string(text)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The chat template filled in, then tokenized, as ONNX Runtime GenAI does."""
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        text = self._template.render(messages=plain, add_generation_prompt=True)
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def decoder(self) -> Callable[[int], str]:
        """Token ids to text, one at a time (a character split over tokens waits)."""
        from tokenizers.decoders import DecodeStream

        stream = DecodeStream(skip_special_tokens=True)
        return lambda token: stream.step(self._tokenizer, token) or ""


class BrowserChat:
    """The chat model of one chat page: ``stream`` sends the prompt to the page and
    yields the text of the tokens it sends back."""

    local = True  # the user's own machine, which sees the passages anyway

    def __init__(self, model: WebModel, link: Link) -> None:
        self.model, self.link = model, link
        self.context_window = model.context_window
        self.used = False  # it was asked to answer (the page may still have failed)
        self._runs_on(link.provider or "wasm")

    def _runs_on(self, provider: str) -> None:
        """The page's runtime: WebGPU, or WASM (no adapter, or WebGPU failed to load)."""
        self.place = f"this browser ({PROVIDERS.get(provider, provider)})"
        self.name = f"{self.model.name}, written in {self.place}"

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        return self._stream(messages, max_tokens, temperature, repetition_penalty)

    async def _stream(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None,
    ) -> AsyncIterator[str]:
        self.used = True
        ids = await asyncio.to_thread(self.model.prompt_ids, messages)
        # The page's last run may read up to LOGIT_ROWS tokens past the answer (guesses).
        room = self.context_window - LOGIT_ROWS
        if len(ids) >= room:
            raise ModelUnavailable(
                f"The prompt has {len(ids)} tokens but {self.model.name} reads "
                f"{self.context_window}."
            )
        max_tokens = min(max_tokens, room - len(ids))
        job = self.link.open_job()
        try:
            await self.link.notify(
                {
                    "type": MESSAGE,
                    "kind": "job",
                    "job": job.id,
                    "tokens": ids,
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    "repetition_penalty": repetition_penalty or 1.0,
                    "eos": self.model.eos,
                }
            )
            async for text in self._texts(job, max_tokens):
                yield text
        finally:
            self.link.close_job(job)  # the page's next post is refused: it stops

    async def _texts(self, job: Job, max_tokens: int) -> AsyncIterator[str]:
        decode, written, wait = self.model.decoder(), 0, FIRST_WAIT_S
        while True:
            try:
                message = await asyncio.wait_for(job.inbox.get(), wait)
            except TimeoutError:
                raise ModelUnavailable(
                    f"The browser sent nothing for {wait:.0f} s: is the chat's tab still open?"
                ) from None
            wait = NEXT_WAIT_S
            if error := message.get("error"):
                raise ModelUnavailable(f"The browser could not write the answer: {error}")
            if provider := message.get("provider"):
                self._runs_on(provider)
            for token in message.get("tokens", []):
                if token in self.model.eos or written >= max_tokens:
                    return
                written += 1
                if text := decode(token):
                    yield text
            if message.get("done"):
                return


class BrowserPool(ModelPool):
    """A chat's models with its browser first: the server's own take over when the page
    cannot start (no model, an error before the first token)."""

    def __init__(self, server: ModelPool, chat: BrowserChat) -> None:
        super().__init__(server.settings, loaded=server.loaded)
        self.server, self.chat = server, chat

    def candidates(self, question: str) -> list[str]:
        return [BROWSER, *self.server.candidates(question)]

    def load(self, spec: str) -> ChatModel:
        return self.chat if spec == BROWSER else self.server.load(spec)
