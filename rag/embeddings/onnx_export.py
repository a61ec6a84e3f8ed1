"""The embedding model exported once to ONNX, so run time needs only onnxruntime and tokenizers.

sentence-transformers stays the source and the reference: a child process loads
the model with it, exports its transformer with ``torch.onnx.export``, checks the
exported model gives the same vectors and writes the folder into the user cache.
(sentence-transformers' own ``backend="onnx"`` export needs optimum-onnx, which
does not install beside transformers 5.) The int8 variant is quantized from the
fp32 export with onnxruntime's dynamic per-channel quantizer.

Run as ``python -m rag.embeddings.onnx_export export|quantize ...`` by ``prepare_export``
only: torch, transformers and onnx are imported in that child and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.embeddings.session import MODEL_FILE, TOKENIZER_FILE, OnnxSession
from rag.errors import ModelUnavailable
from rag.offline_build import build_once, missing_packages, run_offline_step

PRECISIONS = ("fp32", "int8")
# Written last, before the rename: a folder without it is not a finished export.
READY_FILE = "embedder.json"
# Bump when the folder layout or the export changes: old exports are then rebuilt.
FORMAT = 1
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The exported model must match sentence-transformers this closely on the check texts.
MAX_DIFFERENCE = 1e-4
_BUILD_PACKAGES = {
    "torch": "torch",
    "sentence_transformers": "sentence-transformers",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
}
_CHECK_TEXTS = [
    "How do I reset the router?",
    "Solar panels lose a little output every year; clean them twice a season.",
    "Ünïcödé, accents and 日本語のテキスト are tokenized the same way.",
    "A long passage. " * 200,  # past the 256-token limit: truncation must match
]


def export_dir(cache_dir: Path, model: str, precision: str) -> Path:
    """Where the export of ``model`` at ``precision`` lives inside the cache."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(model).name.lower()).strip("-") or "model"
    if os.sep in model or Path(model).is_dir():  # a folder: two folders may share a name
        slug += "-" + hashlib.sha256(str(Path(model).resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir) / "embedders" / f"{slug}-onnx-{precision}"


def read_info(folder: Path) -> dict | None:
    """The export's description, or None if the folder is not a finished export."""
    try:
        info = json.loads((folder / READY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if info.get("format") == FORMAT else None


def prepare_export(
    cache_dir: Path,
    model: str,
    location: str,
    precision: str = "fp32",
    log: Callable[[str], None] = print,
) -> Path:
    """Return the finished export folder, building it first if needed (once per machine)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    target = export_dir(cache_dir, model, precision)
    if read_info(target):
        return target
    # int8 is quantized from the fp32 export, which is built first if missing.
    source = None if precision == "fp32" else prepare_export(cache_dir, model, location, log=log)
    return build_once(
        target,
        read_info,
        lambda folder: _build(folder, model, location, source, log),
        f"Waiting for another process that is exporting {model} to ONNX...",
        log,
    )


def _build(
    target: Path, model: str, location: str, source: Path | None, log: Callable[[str], None]
) -> None:
    missing = missing_packages(_BUILD_PACKAGES)
    if missing:
        raise ModelUnavailable(
            f"Exporting {model} to ONNX needs more packages; run: pip install {' '.join(missing)}"
        )
    # Only called under the lock, so no other build is using these folders.
    for stale in target.parent.glob(f".build-{target.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)  # an unfinished folder without READY_FILE
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".build-{target.name}-", dir=target.parent))
    try:
        if source is None:
            _run_step(
                f"Exporting the embedding model {model} to ONNX",
                ["export", model, location, str(work)],
                log,
            )
        else:
            _run_step(
                f"Quantizing the embedding model {model} to int8",
                ["quantize", str(source), str(work)],
                log,
            )
        os.rename(work, target)  # atomic: readers see no folder or a complete one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"ONNX embedder ready in {time.monotonic() - started:.0f} s at {target}")


def _run_step(what: str, args: list[str], log: Callable[[str], None]) -> None:
    # The same offline child-process step the chat model's build uses: torch and
    # transformers live only in the child, and leave with it.
    run_offline_step(f"{what} (one time)", ["-m", "rag.embeddings.onnx_export", *args], log)


# ---- the child process: heavy imports below this line happen only here ----


def _export(model: str, location: str, out: Path) -> None:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    local = os.path.isdir(location)
    reference = SentenceTransformer(location, device="cpu", local_files_only=local)
    kinds = [type(module).__name__ for module in reference]
    pooling = getattr(reference[1], "pooling_mode", None) if len(kinds) > 1 else None
    supported = kinds[:2] == ["Transformer", "Pooling"] and kinds[2:] in ([], ["Normalize"])
    if not supported or pooling != "mean":
        raise SystemExit(
            f"{model} is {kinds} with {pooling} pooling; the ONNX embedder reproduces "
            "Transformer + mean Pooling (+ Normalize) only: set RAG_EMBEDDER=sentence-transformers."
        )

    class LastHiddenState(torch.nn.Module):
        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    tokenizer = reference.tokenizer
    transformer: Any = reference[0].auto_model
    max_length = int(reference.max_seq_length or 0)
    sample = tokenizer(_CHECK_TEXTS[:2], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(transformer.eval()),
            tuple(sample[name] for name in INPUTS),
            str(out / MODEL_FILE),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=dict.fromkeys([*INPUTS, "last_hidden_state"], axes),
            opset_version=17,
            dynamo=False,  # the dynamo exporter needs onnxscript
        )
    tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))  # the very tokenizer used
    info: dict[str, Any] = {
        "format": FORMAT,
        "model": model,
        "precision": "fp32",
        "max_seq_length": max_length,
        "dimension": int(reference.get_sentence_embedding_dimension() or 0),
    }
    expected = reference.encode(_CHECK_TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = np.asarray(_embed_with(out, max_length, _CHECK_TEXTS), dtype=np.float32)
    difference = float(np.abs(expected - got).max())
    if difference > MAX_DIFFERENCE:
        raise SystemExit(f"The ONNX export differs from sentence-transformers by {difference:.2e}.")
    info["max_difference"] = difference
    _write_info(out, info)


def _quantize(source: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per channel: one scale per output column. One scale per tensor cost recall
    # (cosine 0.93 against fp32); per channel keeps it near 0.99.
    quantize_dynamic(
        str(source / MODEL_FILE),
        str(out / MODEL_FILE),
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    shutil.copy(source / TOKENIZER_FILE, out / TOKENIZER_FILE)
    info = json.loads((source / READY_FILE).read_text(encoding="utf-8"))
    _write_info(out, {**info, "precision": "int8", "max_difference": None})


def _embed_with(folder: Path, max_length: int, texts: list[str]) -> list[list[float]]:
    return OnnxSession(folder, max_length).embed(texts, batch_size=len(texts))


def _write_info(out: Path, info: dict) -> None:
    (out / READY_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")


def main(argv: list[str]) -> None:
    step, *args = argv
    if step == "export":
        _export(args[0], args[1], Path(args[2]))
    elif step == "quantize":
        _quantize(Path(args[0]), Path(args[1]))
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
