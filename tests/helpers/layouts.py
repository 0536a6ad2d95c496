"""Tiny fake data sets in the layouts the readers accept, for tests (built in tmp dirs).

Images are real 16x16 JPEG/PNG files so decode checks and loaders work on them.
Counts are given per canonical class (index 0..6, RAF-DB label = index + 1).
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.emotions import EMOTIONS

IMAGE_SIZE = 16
# the session's tiny RAF-DB copy (tests/conftest.py): images per class, RAF-DB order
RAF_TRAIN = (10, 6, 6, 16, 10, 6, 10)
RAF_TEST = (3, 2, 2, 4, 3, 2, 3)
CROSS_TEST = (2, 2, 0, 3, 2, 2, 2)  # a cross-dataset test set without disgust


def write_image(path: Path, seed: int = 0, size: int = IMAGE_SIZE) -> Path:
    """A small random colour image; the format follows the file extension.

    The pixels depend on the seed and the file's name (and its two folders), so no two
    images of a layout are copies of each other (the split check refuses copies).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    name = zlib.crc32("/".join(path.parts[-3:]).encode())
    pixels = np.random.default_rng([seed, name]).integers(0, 256, (size, size, 3), dtype=np.uint8)
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"could not write {path}")
    return path


def truncate(path: Path) -> Path:
    """Cut an image file in half: a decoder must notice, though OpenCV would not."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _items(counts: Sequence[int]) -> list[int]:
    """Class index of each image, in order: counts (3, 0, 1) -> [0, 0, 0, 2]."""
    return [c for c, n in enumerate(counts) for _ in range(n)]


def make_rafdb(root: Path, train_counts: Sequence[int], test_counts: Sequence[int]) -> Path:
    """RAF-DB "basic" layout: label file plus aligned and original images; returns ``root``."""
    basic = root / "basic"
    lines = []
    for split, counts, digits in (("train", train_counts, 5), ("test", test_counts, 4)):
        for i, c in enumerate(_items(counts), start=1):
            name = f"{split}_{i:0{digits}d}"
            write_image(basic / "Image" / "aligned" / f"{name}_aligned.jpg", seed=i)
            write_image(basic / "Image" / "original" / f"{name}.jpg", seed=i)
            lines.append(f"{name}.jpg {c + 1}\n")
    label_file = basic / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("".join(lines))
    return root


def make_rafdb_kaggle(
    root: Path,
    train_counts: Sequence[int],
    test_counts: Sequence[int],
    csv_in_dataset: bool = False,
) -> Path:
    """Kaggle repackaging: ``DATASET/<split>/<1..7>/`` plus ``<split>_labels.csv``."""
    csv_dir = root / "DATASET" if csv_in_dataset else root
    csv_dir.mkdir(parents=True, exist_ok=True)
    for split, counts in (("train", train_counts), ("test", test_counts)):
        with open(csv_dir / f"{split}_labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "label"])
            for i, c in enumerate(_items(counts), start=1):
                name = f"{split}_{i:05d}_aligned.jpg"
                write_image(root / "DATASET" / split / str(c + 1) / name, seed=i)
                writer.writerow([name, c + 1])
    return root


def make_class_folders(
    root: Path, splits: Mapping[str, Mapping[str, int]], ext: str = ".jpg"
) -> Path:
    """``root/<split>/<folder>/img_<i><ext>``, folder names as given (emotion names or 1..7)."""
    for split, folders in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for folder, n in folders.items():
            for i in range(n):
                write_image(root / split / folder / f"img_{i:03d}{ext}", seed=i)
    return root


def emotion_folders(counts: Sequence[int]) -> dict[str, int]:
    """Canonical emotion folder names with their counts (classes with 0 are left out)."""
    return {EMOTIONS[c]: n for c, n in enumerate(counts) if n}


def make_unlabeled_folder(root: Path, n: int) -> Path:
    """``n`` images spread over nested folders, as a scraped face collection would be."""
    for i in range(n):
        write_image(root / f"batch_{i % 2}" / f"face_{i:03d}.jpg", seed=i)
    return root


def make_fer2013_csv(path: Path, per_usage: dict[str, Sequence[int]]) -> Path:
    """``fer2013.csv`` as Kaggle ships it: ``emotion,pixels,Usage``, counts per FER2013 label
    (0 angry .. 6 neutral) for each Usage; every face a distinct 48x48 grey pattern."""
    rng = np.random.default_rng(2013)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, counts in per_usage.items():
            for label in _items(counts):
                pixels = rng.integers(0, 256, 48 * 48)
                writer.writerow([label, " ".join(map(str, pixels)), usage])
    return path


CKPLUS_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def make_ckplus48(root: Path, subjects: int, per_subject: int = 1) -> Path:
    """CK+48: ``root/<emotion>/S<subject>_<sequence>_<frame>.png``; each subject shows
    every emotion folder ``per_subject`` times (frames of one sequence)."""
    for s in range(subjects):
        for folder in CKPLUS_FOLDERS:
            for frame in range(per_subject):
                name = f"S{100 + s:03d}_{CKPLUS_FOLDERS.index(folder) + 1:03d}_{frame:08d}.png"
                write_image(root / folder / name, seed=s * 31 + frame)
    return root


def make_ckplus_sequences(root: Path, sequences: Mapping[str, int | None], frames: int = 5) -> Path:
    """CK+'s original layout: ``cohn-kanade-images/S005/001/S005_001_0000000<i>.png`` for
    ``{"S005/001": code}``, and ``Emotion/.../..._emotion.txt`` holding the code as CK+ writes
    it (``   3.0000000e+00``) unless the code is None (an unlabeled sequence)."""
    for sequence, code in sequences.items():
        subject, take = sequence.split("/")
        for i in range(1, frames + 1):
            name = f"{subject}_{take}_{i:08d}.png"
            write_image(root / "cohn-kanade-images" / subject / take / name, seed=i)
        if code is not None:
            label = root / "Emotion" / subject / take / f"{subject}_{take}_{frames:08d}_emotion.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"   {code:.7e}\n")
    return root


JAFFE_SUBJECTS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")


def make_jaffe(root: Path, subjects: Sequence[str] = JAFFE_SUBJECTS[:4]) -> Path:
    """JAFFE's flat folder: ``<subject>.<code><take>.<number>.tiff``, each code once per subject."""
    number = 0
    for subject in subjects:
        for code in ("AN", "DI", "FE", "HA", "NE", "SA", "SU"):
            number += 1
            write_image(root / f"{subject}.{code}1.{number}.tiff", seed=number)
    return root
