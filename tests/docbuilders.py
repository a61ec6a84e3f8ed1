"""Builders for the documents of the format tests: scans, photos, tables, broken PDFs.

Text is drawn into images with Pillow's built-in scalable font, so no font
package is needed on the machine.
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from testdocs import write_pdf

TABLE = [
    ["Fruit", "Price", "Stock"],
    ["Apple", "1.20", "40"],
    ["Quince", "3.10", "7"],
    ["Medlar", "5.55", "2"],
]
TABLE_HEADER = "| Fruit | Price | Stock |\n| --- | --- | --- |"


def text_image(lines: list[str], size: int = 40) -> Image.Image:
    font = ImageFont.load_default(size=size)
    image = Image.new("RGB", (1000, 120 + len(lines) * size * 2), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((60, 60 + n * size * 2), line, fill="black", font=font)
    return image


def photo_without_text() -> Image.Image:
    """A smooth gradient with a few shapes: a picture, but no letters on it."""
    image = Image.linear_gradient("L").resize((800, 600)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((200, 150, 450, 400), fill=(40, 120, 60))
    return image


def scanned_pdf(path: Path, pages: list[Image.Image | str]) -> Path:
    """A PDF whose image pages are pictures only (no text layer), as a scanner writes."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for page in pages:
        pdf.add_page()
        if isinstance(page, str):
            pdf.multi_cell(0, 8, page)
        else:
            pdf.image(page, x=10, y=10, w=190)
    pdf.output(str(path))
    return path


def pdf_pypdf_rejects(path: Path, text: str) -> Path:
    """A PDF cut short before its cross-reference pointer: pypdf gives up, PDFium repairs."""
    data = write_pdf(path.with_suffix(".whole.pdf"), [text]).read_bytes()
    path.write_bytes(data[: data.rfind(b"startxref")])
    path.with_suffix(".whole.pdf").unlink()
    return path


def table_pdf(path: Path, rows: list[list[str]] = TABLE, intro: str = "Price list.") -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 8, intro)
    with pdf.table() as table:
        for row in rows:
            cells = table.row()
            for cell in row:
                cells.cell(cell)
    pdf.multi_cell(0, 8, "Prices include tax.")
    pdf.output(str(path))
    return path


def table_docx(path: Path, rows: list[list[str]] = TABLE) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Orchard shop", 1)
    document.add_paragraph("Price list.")
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            table.cell(r, c).text = cell
    document.add_paragraph("Prices include tax.")
    document.save(path)
    return path


def table_html(path: Path, rows: list[list[str]] = TABLE) -> Path:
    head = "".join(f"<th>{c}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
    path.write_text(
        f"<html><body><h1>Orchard shop</h1><p>Price list.</p><table><thead><tr>"
        f"{head}</tr></thead><tbody>{body}</tbody></table>"
        "<p>Prices include tax.</p></body></html>"
    )
    return path
