"""The report of one ingest run: for people on a terminal and for scripts as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Summary:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    pages_without_text: dict[str, int] = field(default_factory=dict)
    chunks_written: int = 0
    seconds: float = 0.0
    ocr_pages: dict[str, int] = field(default_factory=dict)  # pages or images read by OCR
    ocr_seconds: float = 0.0
    read_by: dict[str, str] = field(default_factory=dict)  # PDFs the fallback engine read

    def record_reading(self, name: str, engine: str, ocr_pages: int, ocr_seconds: float) -> None:
        if engine and engine != "pypdf":
            self.read_by[name] = engine
        if ocr_pages:
            self.ocr_pages[name] = ocr_pages
            self.ocr_seconds += ocr_seconds

    def ocr_postfix(self) -> str:
        """For the progress bar: the OCR share of the run, once there is one."""
        if not self.ocr_pages:
            return ""
        return f", OCR {sum(self.ocr_pages.values())} pages in {self.ocr_seconds:.0f} s"

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": len(self.unchanged),
            "removed": self.removed,
            "failed": [{"path": p, "reason": r} for p, r in self.failed.items()],
            "unsupported": len(self.unsupported),
            "pages_without_text": self.pages_without_text,
            "chunks_written": self.chunks_written,
            "seconds": round(self.seconds, 3),
            "ocr_pages": self.ocr_pages,
            "ocr_seconds": round(self.ocr_seconds, 3),
            "read_by": self.read_by,
        }

    def render(self) -> str:
        """One screen: counts first, then each problem file with its reason."""
        lines = [
            f"Ingested in {self.seconds:.1f} s: {len(self.added)} new, "
            f"{len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed, "
            f"{len(self.failed)} failed, {len(self.unsupported)} unsupported skipped.",
            f"Chunks written: {self.chunks_written}"
            + (
                "" if self.chunks_written or self.failed else " (nothing changed, nothing embedded)"
            ),
        ]
        if self.ocr_pages:
            pages = sum(self.ocr_pages.values())
            rate = pages / max(self.ocr_seconds, 1e-6)
            lines.append(
                f"OCR read {pages} scanned page(s) or image(s) in {len(self.ocr_pages)} "
                f"file(s), in {self.ocr_seconds:.1f} s ({rate:.2f} pages/s)."
            )
        if self.read_by:
            lines.append("Read by a second PDF engine, after pypdf could not parse them:")
            lines += [f"  {Path(p).name}: {engine}" for p, engine in self.read_by.items()]
        if self.pages_without_text:
            total = sum(self.pages_without_text.values())
            lines.append(
                f"{total} PDF page(s) had no text layer and no text OCR could read "
                "(or OCR was off), skipped:"
            )
            lines += [f"  {Path(p).name}: {n} page(s)" for p, n in self.pages_without_text.items()]
        if self.failed:
            lines.append("Could not ingest (everything else was saved):")
            lines += [f"  {p}: {reason}" for p, reason in self.failed.items()]
        if self.removed:
            lines.append("Removed from the index (no longer on disk):")
            lines += [f"  {p}" for p in self.removed]
        return "\n".join(lines)
