"""What people actually have: scans, photos of receipts, damaged PDFs, tables, real Markdown.

Every document is built here (fpdf2, Pillow, python-docx), ingested through the
real pipeline and found again with a real search.
"""

import pytest

from rag.ingest.chunking import chunk_sections
from rag.ingest.loaders import Block, ReadOptions, Section, Unreadable, load, markdown_sections
from rag.ingest.pipeline import Ingestor, discover
from rag.ingest.readers import ocr
from rag.library.search import search

from docbuilders import (
    TABLE_HEADER,
    pdf_pypdf_rejects,
    photo_without_text,
    scanned_pdf,
    table_docx,
    table_html,
    table_pdf,
    text_image,
)

needs_ocr = pytest.mark.skipif(not ocr.available(), reason="no OCR engine installed")


def ingest(library, *paths, **kw):
    return Ingestor(library, **kw).run(discover(list(paths)), progress=False)


def keyword_search(library, settings, words, k=3):
    return search(library, words, k, settings.with_overrides(search_mode="lexical"))


@needs_ocr
def test_a_scanned_page_is_read_by_ocr_and_found_by_a_word_on_it(library, settings, tmp_path):
    scan = text_image(["Invoice from Zanzibar Traders", "Total due 418 shillings"])
    pdf = scanned_pdf(tmp_path / "scan.pdf", ["A typed cover page.", scan, photo_without_text()])
    summary = ingest(library, pdf)
    assert summary.added == [str(pdf)] and not summary.failed
    assert summary.ocr_pages == {str(pdf): 2}
    assert summary.pages_without_text == {str(pdf): 1}  # the photo: no text, not even by OCR
    assert "OCR read 2 scanned page(s)" in summary.render()

    [hit] = keyword_search(library, settings, "zanzibar", k=1)
    assert hit.chunk.page == 2 and hit.chunk.extra["ocr"] is True
    assert "Zanzibar" in hit.chunk.text
    assert hit.chunk.label() == "scan.pdf, p. 2, OCR"
    [typed] = keyword_search(library, settings, "cover", k=1)
    assert "ocr" not in typed.chunk.extra and typed.chunk.label() == "scan.pdf, p. 1"


@needs_ocr
def test_a_photo_of_a_receipt_is_found_by_a_word_on_it(library, settings, tmp_path):
    receipt = tmp_path / "receipt.png"
    text_image(["CORNER SHOP RECEIPT", "2 x Pomegranate 4.40", "TOTAL 4.40"]).save(receipt)
    text_image(["Harbour ferry ticket", "Adult single"]).save(tmp_path / "ticket.jpg")
    photo_without_text().save(tmp_path / "holiday.jpeg")
    summary = ingest(library, tmp_path)
    assert sorted(summary.added) == [str(receipt), str(tmp_path / "ticket.jpg")]
    assert summary.failed == {str(tmp_path / "holiday.jpeg"): "no text found in the image"}

    [hit] = keyword_search(library, settings, "pomegranate", k=1)
    assert hit.chunk.source == str(receipt) and hit.chunk.label() == "receipt.png, OCR"


def test_ocr_off_leaves_scans_reported_and_images_refused(library, tmp_path):
    scan = scanned_pdf(tmp_path / "scan.pdf", [text_image(["Quarterly figures"])])
    text_image(["A receipt"]).save(tmp_path / "receipt.png")
    summary = ingest(library, tmp_path, read_options=ReadOptions(ocr=False))
    assert "no text layer in 1 page(s)" in summary.failed[str(scan)]
    assert "OCR is off" in summary.failed[str(tmp_path / "receipt.png")]
    assert not summary.ocr_pages


def test_a_pdf_pypdf_rejects_is_read_by_pdfium_and_the_engine_reported(library, settings, tmp_path):
    broken = pdf_pypdf_rejects(tmp_path / "contract.pdf", "Lease of the walrus enclosure.")
    summary = ingest(library, broken)
    assert summary.added == [str(broken)] and not summary.failed
    assert summary.read_by == {str(broken): "pdfium"}
    assert summary.as_dict()["read_by"] == {str(broken): "pdfium"}
    assert "contract.pdf: pdfium" in summary.render()
    [hit] = keyword_search(library, settings, "walrus", k=1)
    assert hit.chunk.page == 1


@pytest.mark.parametrize("build", [table_pdf, table_docx, table_html], ids=["pdf", "docx", "html"])
def test_a_table_is_retrieved_as_a_markdown_table_with_its_header(
    library, settings, tmp_path, build
):
    document = build(tmp_path / f"prices.{build.__name__.split('_')[1]}")
    ingest(library, document)
    [hit] = keyword_search(library, settings, "quince", k=1)
    assert TABLE_HEADER + "\n| Apple | 1.20 | 40 |\n| Quince | 3.10 | 7 |" in hit.chunk.text


def test_a_table_too_big_for_one_chunk_repeats_its_header_in_every_part(embedder):
    rows = [["Item", "Colour", "Weight"]] + [[f"part-{i}", "green", f"{i} kg"] for i in range(60)]
    from rag.ingest.readers.types import SectionBuilder

    build = SectionBuilder()
    build.paragraph("The parts list follows.")
    build.table(rows)
    build.paragraph("End of list.")
    [section] = build.done()
    pieces = chunk_sections([section], 64, 16, embedder.count_tokens)
    tabled = [p for p in pieces if "part-" in p.text]
    assert len(tabled) > 2
    header = "| Item | Colour | Weight |\n| --- | --- | --- |"
    for piece in tabled:
        assert header in piece.text
        assert all(
            line.startswith("|") for line in piece.text.split("\n") if line and "part-" in line
        )  # rows whole, never cut
    assert max(embedder.count_tokens([p.text for p in pieces])) <= 64
    found = {line for p in tabled for line in p.text.split("\n") if "part-" in line}
    assert len(found) == 60  # every row in some chunk


def test_a_table_that_fits_stays_whole_in_one_chunk(embedder):
    table = "| A | B |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |"
    intro = "An introduction of several words that fills part of a chunk before the table."
    text = f"{intro}\n\n{table}\n\nAfter."
    start = text.index(table)
    section = Section(text, blocks=(Block(start, start + len(table), "table", start + 23),))
    [size] = embedder.count_tokens([table])
    pieces = chunk_sections([section], size + 4, 0, embedder.count_tokens)
    assert any(table in p.text for p in pieces)


MARKDOWN = """---
title: Build notes
tags: [ci]
---
Build notes
===========

How we build.

```bash
# install the tools
make setup
## not a heading either
```

Setup
-----

    # an indented code block
    echo hi

Done.
"""


def test_markdown_headings_come_from_the_parser_not_from_code():
    sections = markdown_sections(MARKDOWN)
    assert [s.heading for s in sections] == ["Build notes", "Build notes > Setup"]
    assert "title:" not in "".join(s.text for s in sections)  # front matter is not prose
    assert "# install the tools" in sections[0].text
    assert [b.kind for b in sections[0].blocks] == ["code"]
    assert sections[0].text[sections[0].blocks[0].start :].startswith("```bash")


def test_markdown_file_with_hash_lines_in_code_keeps_one_heading_path(library, tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text(MARKDOWN)
    ingest(library, doc)
    headings = {c.heading for c in library.store.document_chunks(str(doc))}
    assert headings == {"Build notes", "Build notes > Setup"}


def test_a_long_code_block_is_split_only_between_lines(embedder):
    code = "\n".join(f"    value_{i} = compute(alpha_{i}, beta_{i})  # step {i}" for i in range(40))
    text = f"# Script\n\n```python\n{code}\n```\n"
    [section] = markdown_sections(text)
    pieces = chunk_sections([section], 48, 8, embedder.count_tokens)
    assert len(pieces) > 3
    lines = set(text.split("\n"))
    for piece in pieces:
        assert all(line in lines for line in piece.text.split("\n")), piece.text


CONTENT_MISMATCH = {
    "an HTML page": ("report.pdf", b"<!DOCTYPE html><html><body>Login</body></html>"),
    "named .txt but holds a PDF": ("notes.txt", b"%PDF-1.7\n%binary\n1 0 obj<<>>endobj\n"),
    "holds a ZIP archive": ("letter.docx", None),
    "named .png but holds text": ("photo.png", b"just some text, not pixels"),
}


@pytest.mark.parametrize("reason", CONTENT_MISMATCH)
def test_the_content_not_the_name_chooses_the_reader(tmp_path, reason):
    import zipfile

    name, data = CONTENT_MISMATCH[reason]
    path = tmp_path / name
    if data is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "not a word document")
    else:
        path.write_bytes(data)
    with pytest.raises(Unreadable, match=reason):
        load(path)


def test_text_names_share_their_readers_and_size_is_limited(tmp_path):
    page = tmp_path / "page.txt"
    page.write_text("<html><body><p>Shown as text.</p></body></html>")
    assert "<p>" in load(page).sections[0].text  # a text name: plain text, read as such
    big = tmp_path / "big.md"
    big.write_bytes(b"word " * 300_000)
    with pytest.raises(Unreadable, match=r"too large: 1 MB, the limit is 1 MB \(RAG_MAX_FILE_MB\)"):
        load(big, ReadOptions(max_bytes=2**20))


def test_no_ocr_on_the_command_line(tmp_path, processes):
    import json
    import subprocess
    import sys

    docs = tmp_path / "docs"
    docs.mkdir()
    text_image(["Parking ticket 12 euros"]).save(docs / "ticket.png")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "ingest",
            "--no-ocr",
            "--json",
            str(docs),
            "--index",
            str(tmp_path / "index"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    [failure] = json.loads(done.stdout)["failed"]
    assert "OCR is off" in failure["reason"]


def test_windows_line_endings_and_unicode_line_separators_keep_headings():
    text = (
        "Intro\u2028still intro.\r\n\r\n# One\r\n\r\nBody one.\r\n\r\n## Two\r\n\r\nBody two.\r\n"
    )
    sections = markdown_sections(text)
    assert [s.heading for s in sections] == ["", "One", "One > Two"]
    assert sections[2].text.startswith("## Two")


def _can_cut_the_network() -> bool:
    import shutil
    import subprocess

    return (
        bool(shutil.which("unshare"))
        and subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False).returncode
        == 0
    )


@needs_ocr
@pytest.mark.skipif(not _can_cut_the_network(), reason="cannot run a process without network")
def test_ocr_runs_without_any_network(tmp_path, processes):
    """In a process with no network at all, OCR still reads: its models ship in the wheel."""
    import subprocess
    import sys

    text_image(["Offline reading works"]).save(tmp_path / "offline.png")
    script = (
        "import sys; from PIL import Image; from rag.ingest.readers import ocr; "
        "print(ocr.read(Image.open(sys.argv[1])).text)"
    )
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c", script, str(tmp_path / "offline.png")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Offline reading works" in done.stdout


def test_html_headings_become_the_heading_path(tmp_path):
    page = tmp_path / "guide.html"
    page.write_text(
        "<html><body><p>Intro.</p><h1>Guide</h1><p>Welcome.</p><h2>Setup</h2>"
        "<p>Plug it in.</p><h2>Use</h2><p>Press start.</p></body></html>"
    )
    sections = load(page).sections
    assert [s.heading for s in sections] == ["", "Guide", "Guide > Setup", "Guide > Use"]
    assert "Plug it in." in sections[2].text
