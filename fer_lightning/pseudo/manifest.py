"""Pseudo-label manifests on disk: one CSV per round, written atomically, with an audit column.

``true_label`` is written for auditing only; :func:`read_pseudo_manifest` never returns it,
so the pool's hidden labels cannot reach training through this file.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_lightning.data.dataset import one_hot
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES, PROB_COLUMNS
from fer_lightning.errors import DataError
from fer_lightning.io import atomic_path
from fer_lightning.pseudo.selection import Selection


@dataclass(frozen=True)
class PseudoSet:
    """What the student trains on from the pool: paths, hard labels, target rows, weights."""

    paths: np.ndarray  # str [M]
    labels: np.ndarray  # int64 [M]
    targets: np.ndarray  # float32 [M, 7]
    weights: np.ndarray  # float32 [M]
    confidence: np.ndarray  # float32 [M]

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_selection(cls, paths: np.ndarray, sel: Selection) -> PseudoSet:
        index = sel.index.cpu().numpy()
        return cls(
            np.asarray(paths, dtype=np.str_)[index],
            sel.labels.cpu().numpy().astype(np.int64),
            sel.targets.cpu().numpy().astype(np.float32),
            sel.weights.cpu().numpy().astype(np.float32),
            sel.confidence.cpu().numpy().astype(np.float32),
        )

    def merged_over(self, older: PseudoSet) -> PseudoSet:
        """Union with an older round's set; where both hold an image, this (newer) one wins."""
        keep = ~np.isin(older.paths, self.paths)
        return PseudoSet(
            *(
                np.concatenate([getattr(older, f)[keep], getattr(self, f)])
                for f in ("paths", "labels", "targets", "weights", "confidence")
            )
        )


def write_pseudo_manifest(
    path: str | os.PathLike,
    pseudo: PseudoSet,
    round_index: int,
    soft: bool,
    true_labels: np.ndarray | None = None,
) -> None:
    """``path,label,emotion,confidence,weight,round[,prob_*][,true_label]``, atomically."""
    header = ["path", "label", "emotion", "confidence", "weight", "round"]
    header += list(PROB_COLUMNS) if soft else []
    header += ["true_label"] if true_labels is not None else []
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(len(pseudo)):
            label = int(pseudo.labels[i])
            row = [
                pseudo.paths[i],
                label,
                EMOTIONS[label],
                f"{pseudo.confidence[i]:.6f}",
                f"{pseudo.weights[i]:.6f}",
                round_index,
            ]
            if soft:
                row += [f"{p:.6f}" for p in pseudo.targets[i]]
            if true_labels is not None:
                row.append(int(true_labels[i]) if true_labels[i] >= 0 else "")
            writer.writerow(row)


def read_pseudo_manifest(path: str | os.PathLike) -> PseudoSet:
    """Load a manifest for training: soft targets if ``prob_*`` columns exist, else one-hot."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pseudo-label manifest {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "confidence", "weight"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        rows = list(reader)
    soft = bool(rows) and PROB_COLUMNS[0] in rows[0]
    labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    if soft:
        targets = np.array([[float(r[c]) for c in PROB_COLUMNS] for r in rows], np.float32)
    else:
        targets = one_hot(labels)
    return PseudoSet(
        np.array([r["path"] for r in rows], dtype=np.str_),
        labels,
        targets.reshape(len(rows), NUM_CLASSES),
        np.array([float(r["weight"]) for r in rows], dtype=np.float32),
        np.array([float(r["confidence"]) for r in rows], dtype=np.float32),
    )
