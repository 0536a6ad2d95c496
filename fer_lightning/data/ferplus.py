"""FERPlus (Barsoum et al. 2016): ten crowd votes per FER2013 face, ``fer2013new.csv``.

FERPlus ships labels only: row ``i`` of ``fer2013new.csv`` is row ``i`` of FER2013's
``fer2013.csv``, so the faces are FER2013's, decoded once by :func:`read_fer2013` into the
same PNG cache as ``data=fer2013`` (one copy on disk serves both). The votes are mapped by
the header's column *names* to the canonical emotions, never by position.

``majority`` follows FERPlus's own reader (microsoft/FERPlus ``src/ferplus.py``,
``_process_data`` in majority mode, as in the paper, arXiv:1608.01041): a single vote for a
category is noise and set to 0; a face takes the category holding *more than half* of the
remaining votes. A face without such a category (a tie, or votes spread too thin) is left
out, as FERPlus leaves it out; so is a face whose majority is ``unknown`` or ``NF`` (not a
face), and a row FERPlus removed (empty ``Image name``). Each is counted in the log.

``soft`` trains on the vote distribution (:attr:`Manifest.targets`; the loss takes
probability rows as it takes soft pseudo labels). Votes of 1 are noise and set to 0, as
above. A face's *largest category* is the one of the ten with the most remaining votes, a
tie going to the earlier column of FERPlus's order (neutral, happiness, surprise, sadness,
anger, disgust, fear, contempt, unknown, NF: an emotion tied with unknown or NF wins, as in
FERPlus's ``np.argmax``). A face is left out and counted when that is ``unknown`` or ``NF``
(the paper's rule), when no vote is left (only single votes), or when FERPlus removed it.
A largest category in ``drop_classes`` leaves the face out (counted); contempt as the
largest category fails without ``drop_classes=[contempt]``, as in majority mode (it is
outside the 7 emotions). The target is the remaining votes of the 7 emotions, normalised
to sum 1: unknown, NF, contempt and any dropped class's votes are removed first. The hard
label (stratified splits, sampling, validation and test metrics) is the largest category,
the target's argmax with ties to FERPlus's column order.

FERPlus's own soft modes (``_process_data`` in ``crossentropy``/``probability`` mode) keep
only the largest categories (all tied at each level) until they hold 75% of the remaining
votes or three were taken, stopping at unknown or NF; they drop a face whose kept categories
hold no more than half of the votes or number more than three, and keep contempt (8
classes). ``crossentropy`` trains on that distribution; ``probability`` draws a one-hot
target from it per sample. Ours is the ``crossentropy`` kind over every non-noise emotion
vote, with no such cut or test (8 happiness and 2 neutral votes: FERPlus's target is all
happiness, ours 0.8/0.2), in the 7-emotion label space.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer_lightning.data.fer2013 import FER2013_FILE, USAGES, read_fer2013
from fer_lightning.data.manifest import Manifest
from fer_lightning.data.sources import _bad_lines_error, _finish, _kept, _lines, log_left_out
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import ConfigError, DataError

log = logging.getLogger("fer_lightning.data")

FERPLUS_FILE = "fer2013new.csv"
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "NF")  # fmt: skip
NOT_EMOTIONS = ("unknown", "NF")  # a majority here means: no usable emotion, left out
LABEL_MODES = ("majority", "soft")
NO_MAJORITY = "no majority"  # the log's name for faces without a category over half the votes
NO_VOTES = "only single votes"  # soft: no category keeps a vote once the noise is removed
REMOVED = "removed by FERPlus"  # rows with an empty Image name
# the vote column of each canonical emotion, in EMOTIONS order (the target's)
EMOTION_COLUMNS = tuple(VOTE_COLUMNS.index(e) for e in EMOTIONS)


def _paths(root: str | os.PathLike, fer2013_csv: str | None) -> tuple[Path, Path]:
    """(fer2013new.csv, fer2013.csv): ``root`` is their folder or ``fer2013new.csv`` itself."""
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    labels = root / FERPLUS_FILE if root.is_dir() else root
    if not labels.is_file():
        raise DataError(
            f"{labels} not found; point data.root at the folder holding {FERPLUS_FILE} and "
            f"{FER2013_FILE}, or at {FERPLUS_FILE} itself"
        )
    faces = Path(os.path.expanduser(fer2013_csv)) if fer2013_csv else labels.parent / FER2013_FILE
    if not faces.is_file():
        raise DataError(
            f"{faces} not found: FERPlus labels FER2013's faces, which come from {FER2013_FILE}; "
            f"put it beside {labels.name} or give its path as data.source.fer2013_csv=PATH"
        )
    return labels, faces


def _faces_by_line(manifests: dict[str, Manifest]) -> dict[int, tuple[str, str]]:
    """{fer2013.csv line: (decoded PNG, Usage)}: the decoder names each face by its line."""
    faces = {}
    for usage, manifest in manifests.items():
        for path in manifest.paths.tolist():
            faces[int(Path(path).stem)] = (path, usage)
    return faces


def majority(votes: Sequence[int]) -> str | None:
    """The category (a :data:`VOTE_COLUMNS` name) with more than half of the votes, or None.

    Votes of 1 are dropped first (FERPlus's outlier removal). Two categories cannot both
    hold more than half, so there is no tie to break: a tie means no majority.
    """
    kept = _denoised(votes)
    best = max(kept)
    if best == 0 or best * 2 <= sum(kept):
        return None
    return VOTE_COLUMNS[kept.index(best)]


def _denoised(votes: Sequence[int]) -> list[int]:
    """Votes of 1 set to 0: FERPlus's outlier removal (a single annotator's outlier)."""
    return [v if v > 1 else 0 for v in votes]


def largest(votes: Sequence[int]) -> str | None:
    """The category (a :data:`VOTE_COLUMNS` name) with the most votes once votes of 1 are
    dropped, a tie going to the earlier column; None when no vote is left."""
    kept = _denoised(votes)
    best = max(kept)
    return VOTE_COLUMNS[kept.index(best)] if best > 0 else None


def soft_target(votes: Sequence[int], drop_classes: Sequence[str] = ()) -> np.ndarray:
    """The 7 emotions' share of the votes (float32, :data:`EMOTIONS` order, sums to 1).

    Votes of 1 are noise; unknown, NF, contempt (outside the 7 emotions) and the votes of
    classes in ``drop_classes`` are not emotions this face is trained towards. The caller
    makes sure an emotion is left (:func:`largest` is one, not dropped).
    """
    kept = _denoised(votes)
    counts = np.array(
        [
            0 if e in drop_classes else kept[c]
            for e, c in zip(EMOTIONS, EMOTION_COLUMNS, strict=True)
        ],
        dtype=np.float64,
    )
    return (counts / counts.sum()).astype(np.float32)


def _votes(row: dict[str, str | None], where: str) -> list[int]:
    values = [(row.get(c) or "").strip() for c in VOTE_COLUMNS]
    if not all(v.isdigit() for v in values):
        raise DataError(
            f"{where}: votes {','.join(values)} must be {len(VOTE_COLUMNS)} non-negative integers "
            f"({','.join(VOTE_COLUMNS)})"
        )
    return [int(v) for v in values]


def read_ferplus(
    root: str | os.PathLike,
    ferplus_label: str = "majority",
    drop_classes: Sequence[str] = (),
    fer2013_csv: str | None = None,
    cache_dir: str | None = None,
) -> dict[str, Manifest]:
    """``{Training, PublicTest, PrivateTest: Manifest}``: FER2013's faces, FERPlus's labels.

    ``ferplus_label``: ``majority`` (a hard label) or ``soft`` (the vote distribution as
    each manifest's ``targets`` too; the module docstring has both rules).
    ``drop_classes`` must name contempt when a face's majority (soft: largest category) is
    contempt (it is outside the 7 basic emotions); those faces are then left out and
    counted, never relabeled.
    """
    if ferplus_label not in LABEL_MODES:
        raise ConfigError(
            f"data.source.ferplus_label must be one of {', '.join(LABEL_MODES)}, "
            f"got {ferplus_label!r}"
        )
    soft = ferplus_label == "soft"
    labels_file, fer2013 = _paths(root, fer2013_csv)
    faces = _faces_by_line(read_fer2013(fer2013, cache_dir=cache_dir))
    reader = csv.DictReader(_lines(labels_file))
    missing = {"Usage", "Image name", *VOTE_COLUMNS} - set(reader.fieldnames or ())
    if missing:
        raise DataError(
            f"{labels_file}:1: the header lacks {', '.join(sorted(missing))}; FERPlus's is "
            f"Usage,Image name,{','.join(VOTE_COLUMNS)}"
        )
    entries: dict[str, tuple[list[str], list[int], list[np.ndarray]]] = {
        u: ([], [], []) for u in USAGES
    }
    first: dict[str, tuple[str, list[int]]] = {}  # image name -> (its line, its votes)
    repeats: list[str] = []
    left_out: Counter = Counter()
    dropped: Counter = Counter()
    bad: list[str] = []
    rows = 0
    for line, row in enumerate(reader, start=2):
        rows += 1
        where = f"{labels_file}:{line}"
        usage = (row.get("Usage") or "").strip()
        if line not in faces:
            continue  # more rows than FER2013 has: one error below, for the whole file
        face, face_usage = faces[line]
        if usage != face_usage:
            bad.append(
                f"{where}: Usage {usage!r}, but {fer2013.name}:{line} is {face_usage!r}; "
                f"the rows must be FER2013's, in its order"
            )
            continue
        name = (row.get("Image name") or "").strip()
        if not name:
            left_out[REMOVED] += 1
            continue
        try:
            votes = _votes(row, where)
        except DataError as err:
            bad.append(str(err))
            continue
        if name in first:
            line0, votes0 = first[name]
            kind = "repeats" if votes == votes0 else "labels it otherwise than"
            repeats.append(f"{where} {kind} line {line0} ({name})")
            continue
        first[name] = (str(line), votes)
        category = largest(votes) if soft else majority(votes)
        if category is None or category in NOT_EMOTIONS:
            left_out[category or (NO_VOTES if soft else NO_MAJORITY)] += 1
            continue
        rule = "most votes" if soft else "majority"
        label = _kept(category, drop_classes, f"{where} ({name}: {rule} {category})")
        if label is None:
            dropped[category] += 1
            continue
        paths, labels, targets = entries[usage]
        paths.append(face)
        labels.append(label)
        if soft:
            targets.append(soft_target(votes, drop_classes))
    _bad_lines_error(bad, "Usage,Image name and ten vote counts, the rows FER2013's")
    if rows != len(faces):
        raise DataError(
            f"{labels_file} has {rows} rows, {fer2013} {len(faces)}: FERPlus labels FER2013's "
            f"faces row by row; use the {FER2013_FILE} that {labels_file.name} was made for"
        )
    if repeats:
        raise DataError(
            f"{labels_file}: {len(repeats)} image names are listed twice (one face would get "
            f"two rows of votes): {', '.join(repeats[:5])}; keep one row of each"
        )
    log_left_out(left_out, f"FERPlus {labels_file}", f"{ferplus_label} rule")
    log_left_out(dropped, f"FERPlus {labels_file}")
    manifests = {
        usage: Manifest(
            np.array(paths, dtype=np.str_),
            np.array(labels, dtype=np.int64),
            np.array(targets, dtype=np.float32).reshape(-1, NUM_CLASSES) if soft else None,
        )
        for usage, (paths, labels, targets) in entries.items()
        if paths
    }
    if not manifests:
        raise DataError(
            f"{labels_file}: no face has a usable emotion (ferplus_label={ferplus_label})"
        )
    return _finish(manifests, f"FERPlus {labels_file}")
