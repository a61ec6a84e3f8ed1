"""Calibrating RAG_MIN_SIMILARITY: best cosine similarity of on- and off-topic questions.

    python -m benchmarks.relevance

Ingests data/ into a temporary index, then prints, for questions the sample
documents answer and questions they do not, the similarity of the best passage,
and how many of each a threshold lets through.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rag.config import Settings
from rag.ingest.pipeline import Ingestor, discover
from rag.library.live import open_library
from rag.library.search import search

ON_TOPIC = [
    "What is the daily meal allowance?",
    "When was inverter 3 replaced?",
    "How do I activate the virtual environment on Windows?",
    "Who planted the tea garden?",
    "Can I fly business class?",
    "How often should the solar panels be cleaned?",
    "What does the first flush taste like?",
    "Which model should I use for real work?",
    "hotel limit in Paris",
    "bird spikes cost",
    "Are alcoholic drinks reimbursed?",
]
OFF_TOPIC = [
    "What is the capital of France?",
    "Who won the 1998 World Cup?",
    "How do I bake sourdough bread?",
    "Explain quantum entanglement",
    "What is the boiling point of mercury?",
    "Write a poem about cats",
    "What's the weather tomorrow?",
    "How many legs does a spider have?",
    "Tell me a joke",
    "Best python web framework?",
]
DATA = Path(__file__).resolve().parent.parent / "data"


def best_similarity(library, question: str, settings: Settings) -> float:
    """As the chat judges it: the best similarity among the passages it retrieves."""
    hits = search(library, question, settings.top_k, settings)
    return max((h.similarity for h in hits if h.similarity is not None), default=0.0)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(index=Path(tmp) / "index", collection="relevance")
        library = open_library(settings)
        Ingestor(library).run(discover([DATA]), progress=False)
        on = [best_similarity(library, q, settings) for q in ON_TOPIC]
        off = [best_similarity(library, q, settings) for q in OFF_TOPIC]
    for label, questions, scores in (("on ", ON_TOPIC, on), ("off", OFF_TOPIC, off)):
        for q, s in sorted(zip(questions, scores), key=lambda p: p[1]):
            print(f"{label} {s:.3f}  {q}")
    print(f"on-topic {min(on):.2f}..{max(on):.2f}, off-topic {min(off):.2f}..{max(off):.2f}")
    for threshold in (0.2, 0.25, 0.3, 0.35):
        kept = sum(s >= threshold for s in on)
        refused = sum(s < threshold for s in off)
        print(
            f"threshold {threshold:.2f}: answers {kept}/{len(on)} on-topic, "
            f"refuses {refused}/{len(off)} off-topic"
        )
    print(f"current default RAG_MIN_SIMILARITY={Settings().min_similarity}")


if __name__ == "__main__":
    main()
