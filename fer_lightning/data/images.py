"""Image files: which names count as images, and the one decoding policy for every path.

Training, evaluation, the pseudo-label pass and ``fer-predict`` all decode through
:func:`read_rgb`, so a file accepted by one is accepted by all. OpenCV's ``imdecode``
refuses truncated files (``imread`` returns a half-grey image for a JPEG cut in half),
and a JPEG must also end with its end-of-image marker.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
ON_CORRUPT = ("fail", "skip")
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def is_image(path: str | os.PathLike) -> bool:
    """An image file name (by extension), not a hidden file."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def check_on_corrupt(value: str) -> str:
    if value not in ON_CORRUPT:
        raise ConfigError(f"data.on_corrupt must be 'fail' or 'skip', got {value!r}")
    return value


def _decode(path: str | os.PathLike) -> tuple[np.ndarray | None, str]:
    """(BGR image, "") or (None, why it cannot be decoded)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        return None, f"{type(err).__name__}: {err.strerror or err}"
    if data[:2].tobytes() == _JPEG_START and _JPEG_END not in data[-1024:].tobytes():
        return None, "truncated JPEG (no end-of-image marker)"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return None, "not a decodable image (corrupt, truncated or empty)"
    return image, ""


def decode_error(path: str | os.PathLike, min_side: int = 1) -> str | None:
    """Why ``path`` cannot be used as an image (unreadable, truncated, too small), or None."""
    image, why = _decode(path)
    if image is None:
        return why
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        return f"{width}x{height} px is smaller than data.min_image_side={min_side}"
    return None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array; DataError if it cannot be used."""
    image, why = _decode(path)
    if image is None:
        raise DataError(f"cannot read image {path}: {why}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
