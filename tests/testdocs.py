"""Builders for the test documents: real PDFs written with fpdf2 and pypdf."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter


def write_pdf(path: Path, pages: list[str]) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
        else:
            pdf.rect(20, 20, 100, 60)  # a drawing, as on a scanned page: no text layer
    pdf.output(str(path))
    return path


def encrypt_pdf(source: Path, target: Path, password: str = "s3cret") -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=password, algorithm="AES-128")
    with target.open("wb") as f:
        writer.write(f)
    return target


def truncate(source: Path, target: Path, keep: float = 0.4) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target
