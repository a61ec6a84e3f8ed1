"""Downloading well-known models for people who have the internet.

Only ONNX Runtime GenAI folders are offered, so a download is usable at once
with ``RAG_LLM=onnx:PATH``, with no server and no conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelUnavailable


@dataclass(frozen=True)
class Download:
    repo: str
    folder: str  # the variant inside the repository


CATALOG = {
    # Phi-4-mini-instruct, int4 for CPUs: about 2.5 GB.
    "phi-4-mini-cpu-int4": Download(
        "microsoft/Phi-4-mini-instruct-onnx", "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"
    ),
}


def download(name: str, cache_dir: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    item = CATALOG[name]
    target = cache_dir / "models" / name
    try:
        snapshot_download(item.repo, allow_patterns=[f"{item.folder}/*"], local_dir=target)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelUnavailable(
            f"Could not download {name} from Hugging Face ({type(exc).__name__}): this needs "
            "the internet. Offline, copy an ONNX Runtime GenAI model folder to this machine "
            "and use RAG_LLM=onnx:PATH, or run Phi-4-mini with Foundry Local."
        ) from exc
    return target / item.folder
