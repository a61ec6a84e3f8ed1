"""A reproducible synthetic corpus: varied, sentence-shaped text in Markdown and plain files."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = [
    "system",
    "report",
    "garden",
    "valve",
    "pressure",
    "invoice",
    "travel",
    "policy",
    "engine",
    "model",
    "river",
    "battery",
    "schedule",
    "budget",
    "sensor",
    "network",
    "customer",
    "contract",
    "harvest",
    "window",
    "server",
    "cable",
    "meeting",
    "kitchen",
    "license",
    "audit",
    "shipment",
    "panel",
    "inverter",
    "filter",
    "update",
    "storage",
    "receipt",
    "hotel",
    "reactor",
    "glacier",
    "library",
    "museum",
    "protocol",
    "vaccine",
    "turbine",
    "ledger",
    "orchard",
    "compiler",
]


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 20))
    return " ".join(words).capitalize() + f" {rng.randint(1, 9999)}."


def document(rng: random.Random, paragraphs: int) -> str:
    parts = []
    for p in range(paragraphs):
        if p % 4 == 0:
            parts.append(f"## Section {p // 4 + 1}")
        parts.append(" ".join(sentence(rng) for _ in range(rng.randint(3, 7))))
    return "\n\n".join(parts)


def write_corpus(folder: Path, docs: int, paragraphs: int = 12, seed: int = 7) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(docs):
        suffix = ".md" if i % 2 else ".txt"
        (folder / f"doc{i:05}{suffix}").write_text(
            f"# Document {i}\n\n" + document(rng, paragraphs)
        )
    return folder
