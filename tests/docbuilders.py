"""Builders for the documents of the format tests: scans, photos, tables, broken PDFs.

Text is drawn into images with Pillow's built-in scalable font, so no font
package is needed on the machine.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
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


# Hostile files (issue #21): small on disk, huge or endless once read. -------------


@dataclass(frozen=True)
class Bomb:
    """``head + block * times + tail``, deflated without deflating it all: the block
    is deflated once, ending on a full flush (so nothing refers back past it), and
    that output repeated."""

    raw: bytes  # raw deflate data, as a ZIP member holds it
    crc: int  # CRC-32 of the inflated bytes, for ZIP
    adler: int  # Adler-32 of the inflated bytes, for a zlib stream
    size: int  # inflated size

    @property
    def zlib(self) -> bytes:
        return b"\x78\xda" + self.raw + self.adler.to_bytes(4, "big")


def bomb(head: bytes, block: bytes, times: int, tail: bytes) -> Bomb:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    once = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.compress(tail) + deflate.flush()
    adler, crc = 1, 0
    for part in [head, *[block] * times, tail]:
        adler, crc = zlib.adler32(part, adler), zlib.crc32(part, crc)
    size = len(head) + len(block) * times + len(tail)
    return Bomb(start + once * times + end, crc, adler, size)


def pdf_stream_bomb(path: Path, inflated_mb: int = 1024) -> Path:
    """A one-page PDF of about 1 MB whose content stream inflates to ``inflated_mb``."""
    text = b"BT /F1 12 Tf 72 720 Td (Boom) Tj ET"
    stream = bomb(b"", b" " * 2**24, inflated_mb // 16, text).zlib
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    count = len(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref)
    path.write_bytes(bytes(out))
    return path


_WORD = b'<?xml version="1.0"?><w:document xmlns:w="%s"><w:body>' % (
    b"http://schemas.openxmlformats.org/wordprocessingml/2006/main"
)


def docx_with_broken_xml(path: Path) -> Path:
    """A real DOCX whose document part is cut off in the middle of a paragraph."""
    return _docx_with_document(path, bomb(_WORD + b"<w:p><w:r><w:t>Cut", b"", 0, b""))


def docx_zip_bomb(path: Path, inflated_mb: int = 1024) -> Path:
    """A real DOCX of about 1 MB whose document part inflates to ``inflated_mb`` of
    empty paragraphs: parsed, each becomes an object many times its size."""
    block = b"<w:p/>" * (2**24 // 6)
    return _docx_with_document(
        path, bomb(_WORD, block, inflated_mb // 16, b"</w:body></w:document>")
    )


def _docx_with_document(path: Path, document: Bomb) -> Path:
    """A DOCX made by python-docx, its word/document.xml replaced by ``document``.
    Written by hand: zipfile would have to deflate the whole inflated part."""
    good = table_docx(path.with_suffix(".good.docx"))
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    good.unlink()
    out, central = bytearray(), bytearray()
    for name, data in members.items():
        part = document if name == "word/document.xml" else bomb(data, b"", 0, b"")
        fields = struct.pack(
            "<HHHHHIIIH", 20, 0, 8, 0, 0x21, part.crc, len(part.raw), part.size, len(name)
        )
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields
        central += struct.pack("<HHHHII", 0, 0, 0, 0, 0, len(out)) + name.encode()
        out += b"PK\x03\x04" + fields + struct.pack("<H", 0) + name.encode() + part.raw
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + b"PK\x05\x06" + end))
    return path


def blank_scans_pdf(path: Path, pages: int) -> Path:
    """Scanned pages with nothing on them: one white picture per page, stored once."""
    return scanned_pdf(path, [Image.new("L", (1240, 1754), 255)] * pages)


def noise_scans_pdf(path: Path, pages: int) -> Path:
    """Scanned pages that are not blank (grey noise), each its own picture."""
    return scanned_pdf(
        path, [Image.effect_noise((310, 438), 40 + n).convert("L") for n in range(pages)]
    )


def huge_png(path: Path, side: int = 13000) -> Path:
    """A ``side`` x ``side`` PNG of one colour: a few kB on disk, side**2 pixels decoded."""
    Image.new("1", (side, side), 1).save(path)
    return path
