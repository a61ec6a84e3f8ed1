"""The records that move between ingest, the store and retrieval."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str  # absolute path of the file
    index: int  # position of the chunk in its file
    page: int | None = None  # 1-based PDF page where the chunk starts
    heading: str = ""  # heading path, e.g. "Setup > Windows"
    start: int = 0  # character span in the extracted text of its page or file
    end: int = 0
    extra: dict[str, str | int | float | bool] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return Path(self.source).name

    def label(self) -> str:
        """How a person refers to the chunk: file name plus page or heading."""
        where = f"p. {self.page}" if self.page else self.heading
        if self.extra.get("ocr"):  # read from pixels: words may be misread
            where = f"{where}, OCR" if where else "OCR"
        return f"{self.title}, {where}" if where else self.title


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    # Relevance, higher is better, never increasing with rank. Its scale depends on
    # the search mode: cosine similarity (vector), BM25 (lexical), or the fused score
    # in 0..1 (hybrid); with diversification (mmr_lambda < 1) it is lowered by the
    # hit's similarity to better-ranked hits.
    score: float
    rank: int  # 1-based
    # Cosine similarity of chunk and question, whatever the mode: comparable across
    # questions, so it is what a relevance threshold should use.
    similarity: float | None = None
