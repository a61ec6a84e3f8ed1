"""Uploads into a chat read every format ingest reads, checked on the server by content."""

import zipfile

import pytest

from rag.answers import answering as chat
from rag.conversations import uploads
from rag.library.search import open_library
from rag.models.routing import ModelPool

from docbuilders import table_docx


@pytest.fixture
def chat_uploads(settings, embedder):
    made = uploads.create(settings, embedder)
    yield made
    uploads.discard(made)


async def test_an_uploaded_docx_is_answered_from(
    chat_uploads, settings, embedder, tmp_path, embedded_model
):
    # Chainlit keeps an upload under a random name without a suffix; the name is the user's.
    stored = table_docx(tmp_path / "6f1c2a90")
    report = uploads.add(chat_uploads, str(stored), "prices.docx")
    assert report == "Added **prices.docx** to this chat (1 passage)."

    shared = open_library(settings, embedder)
    options = settings.with_overrides(temperature=0.0, llm="embedded")
    pool = ModelPool(options, loaded={"embedded": embedded_model})
    turn = await chat.ask(
        "How much does a quince cost?", [shared, chat_uploads.library], pool, options
    )
    assert turn.grounded and turn.context[0].chunk.title == "prices.docx"
    assert "| Quince | 3.10 | 7 |" in turn.messages[-1]["content"]
    assert turn.text.strip()


def _zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "an archive, not a document")
    return path


REFUSED = {
    "this format is not supported": ("tool.exe", lambda p: p.write_bytes(b"MZ\x90\x00")),
    "named .pdf but holds an HTML page": (
        "invoice.pdf",
        lambda p: p.write_text("<!doctype html><html><body>Sign in</body></html>"),
    ),
    "named .docx but holds a ZIP archive": ("letter.docx", _zip),
    "named .txt but holds a PDF": ("notes.txt", lambda p: p.write_bytes(b"%PDF-1.4\n%\xe2\xe3\n")),
    "too large: 2 MB, the limit is 1 MB": ("big.txt", lambda p: p.write_bytes(b"word " * 400_000)),
}


@pytest.mark.parametrize("reason", REFUSED)
def test_uploads_are_checked_by_content_and_size_before_reading(
    settings, embedder, tmp_path, reason
):
    made = uploads.create(settings.with_overrides(max_file_mb=1), embedder)
    try:
        name, write = REFUSED[reason]
        stored = tmp_path / "upload-without-suffix"
        write(stored)
        report = uploads.add(made, str(stored), name)
        assert report.startswith(f"**{name}**: not added; {reason}")
        assert not (made.folder / "files" / name).exists()  # refused before any copy
    finally:
        uploads.discard(made)
