"""A chat model run in this process by ONNX Runtime GenAI (in the child process of
rag/models/worker.py, since its native calls hold the GIL).

One model serves every chat of the process. Generation is CPU-bound and each
generator holds a large key-value cache, so generations take turns: a lock
admits one at a time, the others wait (and each streams as soon as its turn
comes). A waiting request that is cancelled leaves the queue at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from rag.errors import ModelUnavailable
from rag.models.base import Message
from rag.models.threaded import stream_in_thread, wait_for_turn

if TYPE_CHECKING:  # the runtime loads with the first model, not on import
    import onnxruntime_genai as og

PROMPT_SLICE = 64  # tokens; about 0.15 s of prompt evaluation each on two cores


class Sampling(TypedDict):
    temperature: float
    repetition_penalty: float | None


class OnnxGenAIChat:
    local = True

    def __init__(self, folder: Path, name: str | None = None) -> None:
        config_file = folder / "genai_config.json"
        if not config_file.is_file():
            raise ModelUnavailable(
                f"{folder} is not an ONNX Runtime GenAI model folder (no genai_config.json): "
                "point RAG_LLM=onnx:PATH at the folder that holds it."
            )
        import onnxruntime_genai as og

        self._og = og
        try:
            self._model = og.Model(str(folder))
        except Exception as exc:
            raise ModelUnavailable(f"Could not load the model in {folder}: {exc}") from exc
        self._tokenizer = og.Tokenizer(self._model)
        config = json.loads(config_file.read_text())
        self.context_window = int(config["model"]["context_length"])
        self.name = name or folder.name
        self._turn = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text))

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        repetition_penalty: float | None = None,
    ) -> AsyncIterator[str]:
        sampling: Sampling = {"temperature": temperature, "repetition_penalty": repetition_penalty}
        running: list[
            og.Generator
        ] = []  # the live generator, so a cancel can interrupt native work

        def terminate() -> None:
            for generator in running:
                # Stops even a long prompt evaluation, not just the next token.
                generator.set_runtime_option("terminate_session", "1")

        def produce(cancel: threading.Event) -> Iterator[str]:
            if not wait_for_turn(self._turn, cancel):
                return
            try:
                yield from self._generate(messages, max_tokens, sampling, cancel, running)
            except Exception as exc:
                if cancel.is_set():
                    return  # terminate_session makes the native call raise; that is the stop
                raise ModelUnavailable(f"{self.name} failed while generating: {exc}") from exc
            finally:
                running.clear()
                self._turn.release()

        return stream_in_thread(produce, on_cancel=terminate, name="onnx-genai")

    def _generate(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        sampling: Sampling,
        cancel: threading.Event,
        running: list[og.Generator],
    ) -> Iterator[str]:
        og = self._og
        # The chat template comes from the model folder, so each model gets its own format.
        prompt = self._tokenizer.apply_chat_template(
            json.dumps(list(messages)), add_generation_prompt=True
        )
        tokens = self._tokenizer.encode(prompt)
        if len(tokens) >= self.context_window:
            raise ValueError(
                f"the prompt has {len(tokens)} tokens but the model reads {self.context_window}"
            )
        params = og.GeneratorParams(self._model)
        temperature = sampling["temperature"]
        options = {
            "max_length": min(self.context_window, len(tokens) + max_tokens),  # prompt + answer
            "do_sample": temperature > 0,
            "temperature": max(temperature, 1e-3),
            "top_p": 0.9,
        }
        if sampling["repetition_penalty"] is not None:
            options["repetition_penalty"] = sampling["repetition_penalty"]
        params.set_search_options(**options)
        generator = og.Generator(self._model, params)
        running.append(generator)
        # append_tokens holds the GIL while it evaluates the prompt, which would freeze
        # the event loop (and every other chat) for seconds on a long prompt. Small
        # slices give the loop room to breathe and let Stop act between them; the
        # answer is the same as with one call.
        for start in range(0, len(tokens), PROMPT_SLICE):
            if cancel.is_set():
                return
            generator.append_tokens(tokens[start : start + PROMPT_SLICE])
        decoder = self._tokenizer.create_stream()
        while not generator.is_done() and not cancel.is_set():
            generator.generate_next_token()
            text = decoder.decode(generator.get_next_tokens()[0])
            if text:
                yield text
