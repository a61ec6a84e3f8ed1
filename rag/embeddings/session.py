"""An exported embedder folder loaded for inference. It imports nothing above it, so
the embedder that uses it and the export that checks its own output both can."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


class OnnxSession:
    """An exported model folder loaded for inference: tokenizer, ONNX Runtime, mean pooling."""

    def __init__(self, folder: Path, max_length: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        # The saved tokenizer may carry fixed-length padding; pad to the batch's longest.
        saved = self._tokenizer.padding or {}
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding(
            pad_id=saved.get("pad_id", 0), pad_token=saved.get("pad_token", "[PAD]")
        )
        # A second tokenizer that never truncates: configuring one tokenizer from two
        # threads fails in Rust ("Already borrowed"); two configured once never do.
        self._counter = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self._counter.no_truncation()
        self._counter.no_padding()
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        self._session = onnxruntime.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def embed(self, texts: Sequence[str], batch_size: int) -> list[list[float]]:
        import numpy as np

        # Longest first, as sentence-transformers does: batches of like lengths pad little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[Any] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            for i, vector in zip(part, self._embed_batch([texts[i] for i in part]), strict=True):
                vectors[i] = vector
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1).tolist()

    def _embed_batch(self, texts: list[str]) -> Any:
        import numpy as np

        encoded = self._tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        # Mean over the real tokens (not the padding), then unit length, as the
        # model's Pooling and Normalize modules do.
        mask = feed["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encoded = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encoded]
