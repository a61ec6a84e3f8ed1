"""Photos and scans of text (PNG, JPEG), read by OCR."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rag.ingest.readers import ocr
from rag.ingest.readers.types import Loaded, ReadOptions, Section, Unreadable

if TYPE_CHECKING:
    from PIL.Image import Image

# Checked from the header, before a pixel is decoded: a 36 kB PNG can hold 13000x13000
# pixels of one colour, 500 MB once decoded and several times that through OCR. 50
# million pixels is beyond a 48-megapixel phone photo (a JPEG is decoded at a fraction
# of its size anyway); OCR reads it at 2000 pixels.
MAX_PIXELS = 50_000_000


def read(path: Path, options: ReadOptions) -> Loaded:
    if not options.ocr:
        raise Unreadable("an image, and OCR is off (--no-ocr / RAG_OCR=false)")
    if not ocr.available():
        raise Unreadable("an image, and no OCR engine is installed (pip install rapidocr)")
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with _open(path) as image:
            image.draft(None, (ocr.LONG_SIDE, ocr.LONG_SIDE))  # a JPEG decodes smaller
            _check_size(*image.size)  # as it will be decoded
            image.thumbnail((ocr.LONG_SIDE, ocr.LONG_SIDE))  # keeps only what OCR reads
            upright = ImageOps.exif_transpose(image)  # phones store portrait shots sideways
            if ocr.blank(upright):
                raise Unreadable("a blank image: nothing to read")
            found = ocr.read(upright)
    except Image.DecompressionBombError as exc:
        raise Unreadable(f"too large to read safely: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise Unreadable(f"damaged image: {exc}") from exc
    if not found.text.strip():
        raise Unreadable("no text found in the image")
    return Loaded([Section(found.text, ocr=True)], ocr_pages=1, ocr_seconds=found.seconds)


def _open(path: Path) -> Image:
    """The image, its header read, none of its pixels decoded yet."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked by size
        return Image.open(path)


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise Unreadable(
            f"too large to read safely: {width}x{height} pixels, more than "
            f"{MAX_PIXELS // 10**6} million"
        )
