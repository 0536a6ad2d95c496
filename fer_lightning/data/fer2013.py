"""FER2013 as it is distributed: one CSV of 48x48 grey faces, ``emotion,pixels,Usage``.

The faces are decoded once into PNG files (a cache keyed by the CSV's path, size and
modification time), so every later step reads images by path like any other source:
the decoded-image cache, duplicate detection by content, the teacher cache's file
stamps and ``fer-predict`` on the same files. Labels are mapped by *name* from FER2013's
order (angry, disgust, fear, happy, sad, surprise, neutral) to the canonical one.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.data.manifest import Manifest
from fer_lightning.emotions import emotion_index
from fer_lightning.errors import DataError
from fer_lightning.io import atomic_dir, write_csv

log = logging.getLogger("fer_lightning.data")

FER2013_FILE = "fer2013.csv"
FER2013_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # 0..6
USAGES = ("Training", "PublicTest", "PrivateTest")  # the split names the reader returns
SIDE = 48
INDEX_FILE = "labels.csv"  # path,label,usage of every decoded face, written last


def _csv_path(root: str | os.PathLike) -> Path:
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if path.is_dir():
        path = path / FER2013_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found; point data.root at {FER2013_FILE} (emotion,pixels,Usage) "
            "or the folder holding it"
        )
    return path


def _face(row: dict[str, str], where: str) -> tuple[np.ndarray, int, str]:
    """One CSV row as (48x48 uint8 image, canonical label, usage); errors name ``where``."""
    try:
        label = emotion_index(FER2013_ORDER[int(row["emotion"])])
    except (ValueError, IndexError, TypeError):
        raise DataError(
            f"{where}: emotion {row.get('emotion')!r} is not FER2013's 0..6 "
            f"({', '.join(FER2013_ORDER)})"
        ) from None
    usage = (row.get("Usage") or "").strip()
    if usage not in USAGES:
        raise DataError(f"{where}: Usage {usage!r} is not one of {', '.join(USAGES)}")
    try:
        pixels = np.array((row.get("pixels") or "").split(), dtype=np.int64)
    except ValueError:
        raise DataError(f"{where}: pixels must be space-separated integers 0..255") from None
    if pixels.size != SIDE * SIDE or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise DataError(
            f"{where}: {pixels.size} pixel values; a FER2013 face is {SIDE}x{SIDE} = "
            f"{SIDE * SIDE} integers 0..255"
        )
    return pixels.reshape(SIDE, SIDE).astype(np.uint8), label, usage


def _decode(csv_path: Path, out: Path) -> None:
    """Every row to ``out/<Usage>/<line>.png`` and the index, all or nothing."""
    with atomic_dir(out) as tmp, open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(
                f"{csv_path}:1: the header lacks {', '.join(sorted(missing))}; "
                "FER2013's is emotion,pixels,Usage"
            )
        for usage in USAGES:
            (tmp / usage).mkdir()
        rows = []
        for line, row in enumerate(reader, start=2):
            image, label, usage = _face(row, f"{csv_path}:{line}")
            name = Path(usage) / f"{line:06d}.png"
            if not cv2.imwrite(str(tmp / name), image):
                raise DataError(f"could not write {tmp / name}; check the disk under {out.parent}")
            rows.append({"path": str(out / name), "label": label, "usage": usage})
        if not rows:
            raise DataError(f"{csv_path} has a header but no faces")
        write_csv(tmp / INDEX_FILE, rows)
    log.info("FER2013: %d faces of %s decoded once into %s", len(rows), csv_path, out)


def read_fer2013(root: str | os.PathLike, cache_dir: str | None = None) -> dict[str, Manifest]:
    """``{Training, PublicTest, PrivateTest: Manifest}`` from ``fer2013.csv`` (or its folder).

    The PNG files go to ``cache_dir`` (default: beside the CSV) under a folder named by a
    hash of the CSV's path, size and modification time: a changed CSV is decoded again.
    """
    csv_path = _csv_path(root)
    stat = csv_path.stat()
    stamp = f"{csv_path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    key = hashlib.blake2b(stamp, digest_size=6).hexdigest()
    out = Path(cache_dir or csv_path.parent).expanduser().resolve() / f"fer2013-png-{key}"
    if not (out / INDEX_FILE).is_file():
        _decode(csv_path, out)
    with open(out / INDEX_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    manifests = {}
    for usage in USAGES:
        mine = [r for r in rows if r["usage"] == usage]
        if mine:
            paths = np.array([r["path"] for r in mine], dtype=np.str_)
            manifests[usage] = Manifest(paths, np.array([int(r["label"]) for r in mine]))
    return manifests
