"""Decoded images held once in memory (``data.cache=memory``): no JPEG decoding per epoch.

All images of a run (labeled, pool, validation, test) are decoded once into one uint8
array. DataLoader workers are forked after it is filled and only read it, so the pages
are shared, not copied; a path is found by binary search in a sorted numpy string array
(no Python dict, whose refcounts would make every worker copy its pages).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from fer_lightning.data.images import read_rgb
from fer_lightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CACHE_MODES = ("none", "memory")


class ImageCache:
    """``paths`` (sorted) and their images, all ``size`` x ``size`` x 3 uint8."""

    def __init__(self, paths: np.ndarray, size: int, max_gib: float, workers: int = 4) -> None:
        self.paths = np.unique(np.asarray(paths, dtype=np.str_))
        self.size = size
        need = len(self.paths) * size * size * 3
        if need > max_gib * 2**30:
            raise ConfigError(
                f"data.cache=memory: {len(self.paths)} images of {size}x{size} px need "
                f"{need / 2**30:.2f} GiB, over data.cache_max_gib={max_gib}; raise the limit "
                "or set data.cache=none"
            )
        self.images = np.empty((len(self.paths), size, size, 3), dtype=np.uint8)

        def fill(i: int) -> None:
            image = read_rgb(self.paths[i])
            if image.shape[:2] != (size, size):
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            self.images[i] = image

        with ThreadPoolExecutor(max_workers=workers) as pool:  # decoding releases the GIL
            list(pool.map(fill, range(len(self.paths))))
        log.info(
            "image cache: %d images of %dx%d px in memory (%.0f MiB)",
            len(self.paths),
            size,
            size,
            self.images.nbytes / 2**20,
        )

    def __call__(self, path: str) -> np.ndarray:
        """The decoded image of ``path`` (read-only: the array is shared)."""
        i = int(np.searchsorted(self.paths, path))
        if i >= len(self.paths) or self.paths[i] != path:
            raise DataError(f"{path} is not in the image cache (data.cache=memory)")
        return self.images[i]
