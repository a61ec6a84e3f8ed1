"""Hostile files (issue #21): each one fails alone, with its reason, within the readers' limits.

Every file is built in the test, small on disk: a PDF whose content stream
inflates to 1 GB, a DOCX with broken XML, a DOCX zip bomb, a PDF of blank
scanned pages, a 13000x13000 PNG. The readers run in a worker process with a
memory cap and a time limit (rag/ingest/sandbox.py, tests/test_sandbox.py); the
end-to-end test runs the real ``rag ingest`` on them beside a good file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFile, ImageFont

from rag.ingest.readers import docx, image, ocr, pdf
from rag.ingest.readers.types import ReadOptions, Unreadable

from docbuilders import (
    blank_scans_pdf,
    docx_with_broken_xml,
    docx_zip_bomb,
    huge_png,
    noise_scans_pdf,
    pdf_stream_bomb,
    photo_without_text,
    text_image,
)

HOSTILE = {
    "stream-bomb.pdf": (pdf_stream_bomb, "too large to read safely"),
    "broken.docx": (docx_with_broken_xml, "damaged DOCX"),
    "zip-bomb.docx": (docx_zip_bomb, "too large to read safely"),
    "blank-scans.pdf": (lambda p: blank_scans_pdf(p, 60), "no text layer in 60 page(s)"),
    "huge.png": (huge_png, "too large to read safely"),
}
PEAK_LIMIT_MB = 1536

# Runs a command and prints, as the last line of stderr, the largest peak resident
# size (MB) of any process it started. As their subreaper it inherits the processes
# the command leaves behind (a forkserver and its reader workers) and reaps them, so
# each one's peak is counted, whichever process started it. Linux only.
PEAK = """
import ctypes, os, resource, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
code = subprocess.call(sys.argv[1:])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.integration
@pytest.mark.skipif(sys.platform != "linux", reason="the memory cap and the measure are Linux's")
def test_hostile_files_fail_alone_and_no_process_grows_past_1_5_gb(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    good = folder / "orchard.md"
    good.write_text("# Orchard\n\nThe quince orchard behind the mill has forty-two trees.\n")
    for name, (build, _) in HOSTILE.items():
        build(folder / name)

    command = [sys.executable, "-m", "rag.cli", "ingest", str(folder), "--json"]
    command += ["--index", str(tmp_path / "index")]
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *command], capture_output=True, text=True, timeout=900
    )

    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["added"] == [str(good)]
    reasons = {Path(f["path"]).name: f["reason"] for f in report["failed"]}
    assert set(reasons) == set(HOSTILE)
    for name, (_, reason) in HOSTILE.items():
        assert reason in reasons[name], (name, reasons[name])
    peak_mb = int(done.stderr.strip().splitlines()[-1])
    assert peak_mb < PEAK_LIMIT_MB


# The same defences, one reader at a time, in this process: what each one does.


def test_a_pdf_stream_bomb_is_refused_without_trying_a_second_engine(tmp_path, monkeypatch):
    # Smaller than the 1 GB (this runs in the test's own process), but past
    # pypdf's decompression limit: the limit must end the reading, not send the
    # file to PDFium, which has none.
    bomb = pdf_stream_bomb(tmp_path / "bomb.pdf", inflated_mb=128)
    tried = []
    monkeypatch.setattr(pdf, "_pdfium_pages", lambda path: tried.append(path) or ["Boom"])
    with pytest.raises(Unreadable, match="too large to read safely"):
        pdf.read(bomb, ReadOptions())
    assert tried == []


def test_a_docx_with_broken_xml_is_damaged(tmp_path):
    with pytest.raises(Unreadable, match="damaged DOCX"):
        docx.read(docx_with_broken_xml(tmp_path / "broken.docx"), ReadOptions())


def test_a_huge_image_is_refused_by_its_size_before_it_is_decoded(tmp_path, monkeypatch):
    huge = huge_png(tmp_path / "huge.png")
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size))
    with pytest.raises(Unreadable, match="too large to read safely: 13000x13000"):
        image.read(huge, ReadOptions())
    assert decoded == []


@pytest.fixture
def ocr_calls(monkeypatch) -> list[tuple[int, int]]:
    """OCR replaced by a recorder that finds no text: these tests count what reaches it."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(ocr, "available", lambda: True)
    monkeypatch.setattr(
        ocr, "read", lambda picture: calls.append(picture.size) or ocr.Read("", 0.01)
    )
    return calls


def test_blank_scanned_pages_are_skipped_without_ocr(tmp_path, ocr_calls):
    scans = blank_scans_pdf(tmp_path / "blank.pdf", 60)
    with pytest.raises(Unreadable, match=r"no text layer in 60 page\(s\)"):
        pdf.read(scans, ReadOptions())
    assert ocr_calls == []


def test_more_scanned_pages_than_the_budget_are_refused_before_any_ocr(tmp_path, ocr_calls):
    scans = noise_scans_pdf(tmp_path / "noise.pdf", 3)
    with pytest.raises(Unreadable, match=r"too large to read safely.*3 .*RAG_OCR_MAX_PAGES"):
        pdf.read(scans, ReadOptions(ocr_max_pages=2))
    assert ocr_calls == []


def test_scanned_pages_within_the_budget_are_read(tmp_path, ocr_calls):
    scans = noise_scans_pdf(tmp_path / "noise.pdf", 3)
    with pytest.raises(Unreadable, match="OCR found no text"):
        pdf.read(scans, ReadOptions(ocr_max_pages=3))
    assert len(ocr_calls) == 3


def _page(*, specks: bool = False, word: str = "") -> Image.Image:
    """An A4 page scanned at 150 dpi: with dust on the glass, or one word in 12 points."""
    picture = Image.new("L", (1240, 1754), 250)
    draw = ImageDraw.Draw(picture)
    if specks:
        draw.point([(100, 100), (400, 900), (1000, 1600)], fill=0)
    if word:
        draw.text((900, 1500), word, fill=0, font=ImageFont.load_default(size=25))
    return picture


@pytest.mark.parametrize(
    ("picture", "blank"),
    [
        (Image.new("L", (1240, 1754), 255), True),
        (Image.new("RGB", (1240, 1754), (20, 20, 60)), True),  # a dark page is blank too
        (_page(specks=True), True),
        (_page(word="Yes"), False),
        (text_image(["The quince orchard behind the mill"] * 30), False),
        (photo_without_text(), False),  # not blank: OCR decides whether it holds text
    ],
)
def test_blank_pictures_are_told_apart_from_pictures_with_anything_on_them(picture, blank):
    assert ocr.blank(picture) is blank
