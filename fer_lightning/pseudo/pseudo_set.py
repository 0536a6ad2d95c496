"""Pseudo-label manifests on disk: one CSV per round, written atomically, with an audit column.

``true_label`` is written for auditing only; :func:`read_pseudo_manifest` never returns it,
so the pool's hidden labels cannot reach training through this file.
"""

from __future__ import annotations

import csv
import json
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

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.targets.shape != (n, NUM_CLASSES) or not (
            len(self.labels) == len(self.weights) == len(self.confidence) == n
        ):
            raise ValueError(
                f"a pseudo set of {n} paths needs {n} labels, weights and confidences and "
                f"targets of shape ({n}, {NUM_CLASSES}); got targets {self.targets.shape}"
            )

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


def _row_error(path: Path, line: int, why: str) -> DataError:
    return DataError(
        f"{path}:{line}: {why}; the pseudo-label manifest was edited or cut short: delete it "
        f"and its audit ({path.with_suffix('.json').name}) and resume, to select again"
    )


def read_pseudo_manifest(path: str | os.PathLike) -> PseudoSet:
    """Load a manifest for training: soft targets if ``prob_*`` columns exist, else one-hot.

    A malformed row (a line cut short, a value that is not a number, a label outside
    0..6) is a :class:`DataError` naming ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pseudo-label manifest {path} does not exist")
    paths, labels, weights, confidence, targets = [], [], [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = {"path", "label", "confidence", "weight"} - set(header)
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        soft = PROB_COLUMNS[0] in header
        for row in reader:
            line = reader.line_num
            if None in row or None in row.values():
                raise _row_error(path, line, f"not {len(header)} fields like its header")
            try:
                label = int(row["label"])
                values = [float(row["weight"]), float(row["confidence"])]
                if soft:
                    values += [float(row[c]) for c in PROB_COLUMNS]
            except (KeyError, ValueError) as err:
                raise _row_error(path, line, f"not a number ({err})") from None
            if not 0 <= label < NUM_CLASSES:
                raise _row_error(path, line, f"label {label} is outside 0..{NUM_CLASSES - 1}")
            paths.append(row["path"])
            labels.append(label)
            weights.append(values[0])
            confidence.append(values[1])
            if soft:
                targets.append(values[2:])
    hard = np.array(labels, dtype=np.int64)
    target = np.array(targets, np.float32) if soft else one_hot(hard)
    return PseudoSet(
        np.array(paths, dtype=np.str_),
        hard,
        target.reshape(len(paths), NUM_CLASSES),
        np.array(weights, dtype=np.float32),
        np.array(confidence, dtype=np.float32),
    )


def check_audit(pseudo: PseudoSet, manifest: str | os.PathLike, audit: str | os.PathLike) -> None:
    """The manifest must still be the one its audit describes (``added`` rows).

    The audit feeds ``rounds.csv`` and the report: a manifest edited after selection would
    train the student on one set and report another.
    """
    manifest, audit = Path(manifest), Path(audit)
    way_out = (
        f"delete {manifest} and {audit} and resume, to select the pseudo labels again "
        "from the teacher"
    )
    try:
        added = json.loads(audit.read_text())["added"]
    except FileNotFoundError:
        raise DataError(f"{manifest} has no audit ({audit} is missing); {way_out}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{audit}: not a pseudo-label audit ({err}); {way_out}") from None
    if added != len(pseudo):
        raise DataError(
            f"{manifest} holds {len(pseudo)} pseudo labels but its audit {audit} says "
            f"{added}: the manifest was edited after selection; {way_out}"
        )
