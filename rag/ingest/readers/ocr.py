"""Text from pixels, offline: RapidOCR on ONNX Runtime with the models its wheel ships.

The engine is built once, on first use, from the model files inside the
installed ``rapidocr`` package, given by path: RapidOCR downloads a model only
when it is asked for one it does not have, and with explicit paths it never is.
Without those files OCR is simply unavailable (``available()`` is false).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class Read:
    text: str
    seconds: float


_lock = threading.Lock()  # one engine, shared by ingest threads and chats
# Pixels on an image's long side that OCR reads: RapidOCR scales larger images down to
# this (Global.max_side_len) before it detects and reads anything.
LONG_SIDE = 2000


@cache
def _model_files() -> dict[str, Path] | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("rapidocr")
        if spec is None or spec.origin is None or importlib.util.find_spec("onnxruntime") is None:
            return None
    except (ImportError, ValueError):
        return None
    models = Path(spec.origin).parent / "models"
    found = {}
    for task in ("det", "rec", "cls"):
        files = sorted(models.glob(f"*{task}*.onnx"))
        if not files:
            return None
        found[task] = files[-1]  # newest naming sorts last (PP-OCRv6 after v4)
    return found


def available() -> bool:
    return _model_files() is not None


@cache
def _engine() -> Any:
    from rapidocr import RapidOCR

    files = _model_files()
    assert files is not None
    return RapidOCR(
        params={
            "Global.log_level": "error",
            "Det.model_path": str(files["det"]),
            "Rec.model_path": str(files["rec"]),
            "Cls.model_path": str(files["cls"]),
        }
    )


_BLANK_SIDE = 800  # pixels: enough to keep a word in 12 points, cheap to count
_INK = 64  # shades from the background that count as something drawn
_SPECKS = 8  # this many drawn pixels (dust on the glass) still make a blank page


def blank(picture: Image) -> bool:
    """Whether a picture has nothing on it to read: all but a few specks of it one
    background shade. Costs a histogram of a small copy, where OCR of a page costs
    seconds: blank scanned pages (a whole PDF of them, say) are skipped."""
    small = picture.convert("L")
    small.thumbnail((_BLANK_SIDE, _BLANK_SIDE))
    counts = small.histogram()
    background = max(range(256), key=counts.__getitem__)
    drawn = sum(n for shade, n in enumerate(counts) if abs(shade - background) > _INK)
    return drawn <= _SPECKS


def read(image: Image) -> Read:
    """The text lines found in ``image``, top to bottom, one per line."""
    started = time.perf_counter()
    if max(image.size) > LONG_SIDE:  # scaled here, before RapidOCR copies it at full size
        image = image.copy()
        image.thumbnail((LONG_SIDE, LONG_SIDE))
    with _lock:
        result = _engine()(image.convert("RGB"))  # RapidOCR converts PIL images itself
    lines = [t.strip() for t in (result.txts or ()) if t and t.strip()]
    return Read("\n".join(lines), time.perf_counter() - started)
