"""Every format ingest reads can be attached in the browser (DOCX, PNG), and is answered from."""

from __future__ import annotations

from docbuilders import table_docx, text_image
from support_browser import ANSWER, ask, open_chat, retrieval_step, retrieved


def test_an_attached_docx_and_png_are_read_in_the_chat(browser, app_url, tmp_path):
    docx = table_docx(tmp_path / "prices.docx")
    receipt = tmp_path / "receipt.png"
    text_image(["KIOSK RECEIPT", "1 x Tamarind candy 2.80"]).save(receipt)
    context, page = open_chat(browser, app_url[0])
    try:
        page.set_input_files("input[type=file]", [str(docx), str(receipt)])
        page.wait_for_timeout(1000)
        ask(page, "How much does a quince cost?", timeout=300)
        notes = "\n".join(page.locator(ANSWER).all_inner_texts())  # one note per file
        assert "Added prices.docx to this chat (1 passage)" in notes
        assert "Added receipt.png to this chat (1 passage)" in notes
        assert retrieved(retrieval_step(page))[0].startswith("prices.docx")

        ask(page, "What did the tamarind candy cost on the kiosk receipt?")
        assert "receipt.png, ocr" in retrieved(retrieval_step(page))
    finally:
        context.close()
