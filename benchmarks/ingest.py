"""Ingest speed: the full pipeline against embedding its chunks alone, measured in one run.

    python -m benchmarks.ingest [--docs 300] [--ocr-pages 6]

Prints the time to embed the corpus's chunks with the same model and batch
size, the full ingest time (read, chunk, embed, store) and their ratio, then
the time to re-ingest the unchanged corpus and its ratio to the first ingest.
Then, separately, scanned PDF pages (OCR) against the same pages with a text
layer, in pages per second.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from benchmarks.corpus import sentence, write_corpus
from rag.config import Settings
from rag.embeddings.embedder import Embedder, create_embedder
from rag.ingest.pipeline import Ingestor, discover
from rag.library.search import open_library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--ocr-pages", type=int, default=6, help="scanned pages to OCR (0: skip)")
    args = parser.parse_args()
    settings = Settings()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus", args.docs)
        embedder = create_embedder(settings)  # RAG_EMBEDDER chooses; ONNX Runtime by default
        embedder.embed(["warm up the model before timing anything"])
        library = open_library(settings.with_overrides(index=Path(tmp) / "index"), embedder)
        ingestor = Ingestor(library)
        target = discover([corpus])

        started = time.perf_counter()
        first = ingestor.run(target, progress=False)
        full_s = time.perf_counter() - started

        texts = [
            c.text
            for source in library.store.documents()
            for c in library.store.document_chunks(source)
        ]
        started = time.perf_counter()
        for i in range(0, len(texts), ingestor.batch_chunks):  # the pipeline's batches
            embedder.embed(texts[i : i + ingestor.batch_chunks])
        embed_s = time.perf_counter() - started

        started = time.perf_counter()
        again = ingestor.run(target, progress=False)
        reingest_s = time.perf_counter() - started

    assert first.chunks_written == len(texts) and again.chunks_written == 0
    print(
        f"corpus: {args.docs} documents, {len(texts)} chunks, model {embedder.name} "
        f"({settings.embedder}), "
        f"batch {settings.embed_batch_size}"
    )
    print(f"embed chunks alone:      {embed_s:8.2f} s")
    print(
        f"full ingest:             {full_s:8.2f} s   ratio to embedding alone: "
        f"{full_s / embed_s:.3f} (target <= 1.25)"
    )
    print(
        f"re-ingest, unchanged:    {reingest_s:8.2f} s   ratio to first ingest:   "
        f"{reingest_s / full_s:.3f} (target <= 0.05)"
    )
    if args.ocr_pages:
        ocr_pages(args.ocr_pages, settings, embedder)


def _page_lines(rng: random.Random, lines: int = 28) -> list[str]:
    words = " ".join(sentence(rng) for _ in range(lines * 2)).split()
    return [" ".join(words[i : i + 9]) for i in range(0, 9 * lines, 9)]


def ocr_pages(pages: int, settings: Settings, embedder: Embedder) -> None:
    """Scanned pages (images only) against the same text with a text layer, through ingest."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    from rag.ingest.readers import ocr

    if not ocr.available():
        print("OCR: no engine installed, skipped")
        return
    rng = random.Random(11)
    font = ImageFont.load_default(size=26)
    scanned, typed = FPDF(), FPDF()
    typed.set_font("Helvetica", size=11)
    for _ in range(pages):
        lines = _page_lines(rng)
        image = Image.new("L", (1240, 1754), 255)  # A4 at 150 dpi, as an office scanner
        draw = ImageDraw.Draw(image)
        for n, line in enumerate(lines):
            draw.text((90, 110 + n * 54), line, fill=0, font=font)
        scanned.add_page()
        scanned.image(image, x=0, y=0, w=210)
        typed.add_page()
        typed.multi_cell(0, 8, "\n".join(lines))
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        for name, pdf in (("scanned", scanned), ("typed", typed)):
            folder = Path(tmp) / name
            folder.mkdir()
            pdf.output(str(folder / f"{name}.pdf"))
            library = open_library(
                settings.with_overrides(index=Path(tmp) / f"index-{name}"), embedder
            )
            if name == "scanned":
                ocr.read(Image.new("RGB", (64, 64), "white"))  # load the OCR models untimed
            started = time.perf_counter()
            summary = Ingestor(library).run(discover([folder]), progress=False)
            figures[name] = (time.perf_counter() - started, summary)
    ocr_s, summary = figures["scanned"]
    typed_s = figures["typed"][0]
    assert sum(summary.ocr_pages.values()) == pages, summary.render()
    print(
        f"OCR, scanned pages:      {ocr_s:8.2f} s   {pages / ocr_s:.2f} pages/s "
        f"(OCR itself {pages / summary.ocr_seconds:.2f} pages/s), {pages} pages"
    )
    print(f"same pages, text layer:  {typed_s:8.2f} s   {pages / typed_s:.2f} pages/s")


if __name__ == "__main__":
    main()
