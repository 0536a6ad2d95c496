"""A manifest: image paths and labels held as numpy arrays.

numpy arrays (not Python lists of str) keep DataLoader workers from growing
their memory through copy-on-access of refcounted objects after fork.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import DataError
from fer_lightning.io import atomic_path

UNKNOWN = -1  # label of an image whose emotion is not known (unlabeled folders)


@dataclass(frozen=True)
class Manifest:
    """Images of one split: ``paths`` (numpy str array) and ``labels`` (int64, 0..6 or -1)."""

    paths: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", np.asarray(self.paths, dtype=np.str_))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        if self.paths.shape != self.labels.shape or self.paths.ndim != 1:
            raise ValueError(
                f"paths {self.paths.shape} and labels {self.labels.shape} must be 1-D, same length"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray) -> Manifest:
        return Manifest(self.paths[index], self.labels[index])

    def concat(self, other: Manifest) -> Manifest:
        return Manifest(
            np.concatenate([self.paths, other.paths]), np.concatenate([self.labels, other.labels])
        )

    def class_counts(self) -> np.ndarray:
        """Images per class (length 7); unknown labels are not counted."""
        known = self.labels[self.labels >= 0]
        return np.bincount(known, minlength=NUM_CLASSES)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write ``path,label,emotion`` rows atomically (label -1 / emotion empty if unknown)."""
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "emotion"])
            for p, y in zip(self.paths.tolist(), self.labels.tolist(), strict=True):
                writer.writerow([p, y, EMOTIONS[y] if y >= 0 else ""])

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> Manifest:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"manifest {path} does not exist")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"path", "label"} <= rows[0].keys():
            raise DataError(f"{path}: needs columns 'path' and 'label'")
        return cls(
            np.array([r["path"] for r in rows], dtype=np.str_),
            np.array([int(r["label"]) for r in rows], dtype=np.int64),
        )
