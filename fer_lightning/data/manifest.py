"""A manifest: image paths, labels and (optionally) a target distribution, as numpy arrays.

numpy arrays (not Python lists of str) keep DataLoader workers from growing
their memory through copy-on-access of refcounted objects after fork.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_lightning.emotions import EMOTIONS, NUM_CLASSES, PROB_COLUMNS
from fer_lightning.errors import DataError
from fer_lightning.io import atomic_path

UNKNOWN = -1  # label of an image whose emotion is not known (unlabeled folders)
SUM_TOLERANCE = 1e-5  # a target row sums to 1 within this (float32 rounding)


def hard_targets(labels: np.ndarray) -> np.ndarray:
    """Labels as float32 one-hot rows; an unknown label (-1) is a row of zeros (no target)."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.zeros((len(labels), NUM_CLASSES), dtype=np.float32)
    known = np.flatnonzero(labels >= 0)
    rows[known, labels[known]] = 1.0
    return rows


def _float_text(value: float) -> str:
    """The shortest text that reads back as the same float32: a saved split is exact."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


@dataclass(frozen=True)
class Manifest:
    """Images of one split: ``paths`` (numpy str array) and ``labels`` (int64, 0..6 or -1).

    ``targets`` (float32 [N, 7], or None) is a per-image distribution over the emotions to
    train on instead of the one-hot label (FERPlus's vote shares). Each known label's row
    sums to 1 and peaks at the label (the hard label, which splits, sampling, duplicate
    checks and evaluation use, is one of the row's top classes); an unknown label's row is 0.
    """

    paths: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", np.asarray(self.paths, dtype=np.str_))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        if self.paths.shape != self.labels.shape or self.paths.ndim != 1:
            raise ValueError(
                f"paths {self.paths.shape} and labels {self.labels.shape} must be 1-D, same length"
            )
        if self.targets is not None:
            object.__setattr__(self, "targets", np.asarray(self.targets, dtype=np.float32))
            self._check_targets()

    def _check_targets(self) -> None:
        targets, n = self.targets, len(self.paths)
        assert targets is not None
        if targets.shape != (n, NUM_CLASSES):
            raise ValueError(f"targets {targets.shape} must be ({n}, {NUM_CLASSES})")
        known = self.labels >= 0
        rows = targets[known]
        bad = ~np.isfinite(targets).all(1) | (targets < 0).any(1)
        bad[known] |= np.abs(rows.sum(1) - 1.0) > SUM_TOLERANCE
        bad[known] |= rows[np.arange(len(rows)), self.labels[known]] < rows.max(1, initial=0.0)
        bad[~known] |= (targets[~known] != 0).any(1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} target rows are not distributions peaking at their label "
                f"(rows of known labels sum to 1, unknown labels' rows are 0), e.g. "
                f"{self.paths[i]}: label {self.labels[i]}, target {targets[i].tolist()}"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def target_rows(self) -> np.ndarray:
        """What training fits, float32 [N, 7]: ``targets``, or the labels one-hot."""
        return hard_targets(self.labels) if self.targets is None else self.targets

    def subset(self, index: np.ndarray) -> Manifest:
        targets = None if self.targets is None else self.targets[index]
        return Manifest(self.paths[index], self.labels[index], targets)

    def concat(self, other: Manifest) -> Manifest:
        """Both in order; if either has targets, the other's labels join them one-hot."""
        targets = None
        if self.targets is not None or other.targets is not None:
            targets = np.concatenate([self.target_rows(), other.target_rows()])
        return Manifest(
            np.concatenate([self.paths, other.paths]),
            np.concatenate([self.labels, other.labels]),
            targets,
        )

    def class_counts(self) -> np.ndarray:
        """Images per class (length 7); unknown labels are not counted."""
        known = self.labels[self.labels >= 0]
        return np.bincount(known, minlength=NUM_CLASSES)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write ``path,label,emotion[,prob_*]`` rows atomically (label -1 / emotion empty if
        unknown). ``prob_*`` columns (the targets, exact as float32) only when there are
        targets; an unknown label's are empty."""
        header = ["path", "label", "emotion"]
        if self.targets is not None:
            header += list(PROB_COLUMNS)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for i, (p, y) in enumerate(zip(self.paths.tolist(), self.labels.tolist(), strict=True)):
                row = [p, y, EMOTIONS[y] if y >= 0 else ""]
                if self.targets is not None:
                    probs = self.targets[i].tolist()
                    row += [_float_text(v) for v in probs] if y >= 0 else [""] * NUM_CLASSES
                writer.writerow(row)

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> Manifest:
        """Read what :meth:`to_csv` wrote; ``prob_*`` columns, when present, are the targets."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"manifest {path} does not exist")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
        if rows and not {"path", "label"} <= rows[0].keys():
            raise DataError(f"{path}: needs columns 'path' and 'label'")
        probs = [c for c in PROB_COLUMNS if c in header]
        if probs and len(probs) != NUM_CLASSES:
            raise DataError(
                f"{path}: has {', '.join(probs)} but not every one of {', '.join(PROB_COLUMNS)}"
            )
        paths = np.array([r["path"] for r in rows], dtype=np.str_)
        labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
        if not probs:
            return cls(paths, labels)
        targets = np.zeros((len(rows), NUM_CLASSES), dtype=np.float32)
        for i, row in enumerate(rows):
            cells = [(row[c] or "").strip() for c in PROB_COLUMNS]
            if labels[i] < 0 and not any(cells):
                continue  # an unknown label has no target
            try:
                targets[i] = [np.float32(cell) for cell in cells]
            except ValueError:
                raise DataError(
                    f"{path}:{i + 2}: {','.join(cells)} are not {NUM_CLASSES} numbers "
                    f"({','.join(PROB_COLUMNS)})"
                ) from None
        try:
            return cls(paths, labels, targets)
        except ValueError as err:
            raise DataError(f"{path}: {err}") from None
