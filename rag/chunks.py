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
        return f"{self.title}, {where}" if where else self.title


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # cosine similarity, higher is better
    rank: int  # 1-based
