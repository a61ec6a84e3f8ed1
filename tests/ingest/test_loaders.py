import pytest

from rag.ingest.loaders import Unreadable, load

from testdocs import encrypt_pdf, truncate, write_pdf


def test_pdf_pages_keep_their_numbers(tmp_path):
    pdf = write_pdf(tmp_path / "a.pdf", ["Alpha page text.", "", "Gamma page text."])
    loaded = load(pdf)
    assert [(s.page, s.text.strip()) for s in loaded.sections] == [
        (1, "Alpha page text."),
        (3, "Gamma page text."),
    ]
    assert loaded.pages_without_text == 1


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


BAD_FILES = {
    "encrypted": lambda d: encrypt_pdf(write_pdf(d / "p.pdf", ["Secret."]), d / "enc.pdf"),
    "damaged": lambda d: truncate(write_pdf(d / "p.pdf", ["Some text."] * 3), d / "cut.pdf"),
    "no text layer": lambda d: write_pdf(d / "scan.pdf", ["", ""]),
    "empty file": lambda d: _file(d / "empty.md", b""),
    "empty": lambda d: _file(d / "blank.txt", b"  \n\n "),
    "binary": lambda d: _file(d / "bin.txt", bytes(range(256)) * 4),
}


@pytest.mark.parametrize("reason", BAD_FILES)
def test_unreadable_files_say_why(tmp_path, reason):
    with pytest.raises(Unreadable, match=reason):
        load(BAD_FILES[reason](tmp_path))


def test_latin1_text_is_decoded(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("Crème brûlée à la française, façade, naïve, Müller.".encode("latin-1"))
    [section] = load(path).sections
    assert "Crème brûlée" in section.text and "Müller" in section.text


def test_html_keeps_visible_text_only(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>T</title><style>p{color:red}</style></head>"
        "<body><script>var hidden = 1;</script><h1>Visible title</h1>"
        "<p>Body text.</p></body></html>"
    )
    [section] = load(path).sections
    assert "Visible title" in section.text and "Body text." in section.text
    assert "hidden" not in section.text and "color" not in section.text


def test_docx_headings_become_the_heading_path(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Manual", 1)
    document.add_paragraph("Intro text.")
    document.add_heading("Setup", 2)
    document.add_paragraph("Plug it in.")
    document.save(tmp_path / "manual.docx")
    sections = load(tmp_path / "manual.docx").sections
    assert [s.heading for s in sections] == ["Manual", "Manual > Setup"]
    assert "Plug it in." in sections[1].text


def test_a_damaged_docx_says_why(tmp_path):
    (tmp_path / "bad.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Unreadable, match="damaged DOCX"):
        load(tmp_path / "bad.docx")
