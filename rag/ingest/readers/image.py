"""Photos and scans of text (PNG, JPEG), read by OCR."""

from __future__ import annotations

from pathlib import Path

from rag.ingest.readers import ocr
from rag.ingest.readers.types import Loaded, ReadOptions, Section, Unreadable


def read(path: Path, options: ReadOptions) -> Loaded:
    if not options.ocr:
        raise Unreadable("an image, and OCR is off (--no-ocr / RAG_OCR=false)")
    if not ocr.available():
        raise Unreadable("an image, and no OCR engine is installed (pip install rapidocr)")
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)  # phones store portrait shots sideways
            found = ocr.read(upright)
    except Image.DecompressionBombError as exc:
        raise Unreadable(f"image too large to read: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise Unreadable(f"damaged image: {exc}") from exc
    if not found.text.strip():
        raise Unreadable("no text found in the image")
    return Loaded([Section(found.text, ocr=True)], ocr_pages=1, ocr_seconds=found.seconds)
