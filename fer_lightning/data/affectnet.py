"""AffectNet (Mollahosseini et al. 2017), its manually annotated part: two label files, one face
box per image.

``training.csv`` is the training split; ``validation.csv`` is the test split, as in the
literature (AffectNet's own test set is not public). Validation is carved from training by
the split protocol (``data.val_fraction``). Expressions 0..10 are mapped by *name*:
none, uncertain and no-face (8..10) are left out and counted; contempt (7) is outside the 7
basic emotions, so it must be named in ``drop_classes`` (AffectNet-7) and is then counted.

Each face is cropped by its box once and written under ``cache_dir`` (a folder named by a
hash of the label files' paths, sizes and modification times, the image folder and the
format), so every later step reads small files by path like any other source. The crops
come from the one decoding policy of :mod:`fer_lightning.data.images`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from fer_lightning.data.images import _decode
from fer_lightning.data.manifest import Manifest
from fer_lightning.data.sources import (
    _bad_lines_error,
    _finish,
    _kept,
    _lines,
    _root,
    _shortlist,
    log_left_out,
)
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import ConfigError, DataError
from fer_lightning.io import atomic_dir, write_csv

log = logging.getLogger("fer_lightning.data")

LABEL_FILES = {"train": "training.csv", "test": "validation.csv"}  # split -> AffectNet's file
LIST_DIR = "Manually_Annotated_file_lists"  # where AffectNet ships the label files
IMAGE_DIR = "Manually_Annotated_Images"
EXPRESSIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger",
               "contempt", "none", "uncertain", "no-face")  # 0..10  # fmt: skip
EMOTION_CODES = 8  # 0..7 name an emotion (contempt included); 8..10 are left out
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")
CROP_FORMATS = {"jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], "png": [cv2.IMWRITE_PNG_COMPRESSION, 3]}
INDEX_FILE = "crops.csv"  # split,path,expression of every cropped face, written last


@dataclass(frozen=True)
class Face:
    """One label line with an emotion: where it is, the image, its box and its expression."""

    split: str
    where: str  # file:line
    name: str  # subDirectory_filePath, relative to the image folder
    box: tuple[int, int, int, int]  # x, y, width, height
    expression: int


def _label_files(root: Path) -> dict[str, Path]:
    """The two label files, in ``root`` or in its ``Manually_Annotated_file_lists``."""
    for folder in (root, root / LIST_DIR):
        files = {split: folder / name for split, name in LABEL_FILES.items()}
        if all(f.is_file() for f in files.values()):
            return files
    raise DataError(
        f"AffectNet label files {' and '.join(LABEL_FILES.values())} not found in {root} or "
        f"{root / LIST_DIR}; point data.root at the folder holding them"
    )


def _name(text: str) -> str:
    """A relative image path (POSIX separators), or ValueError when it could leave the folder."""
    path = PurePosixPath(text.strip().replace("\\", "/"))
    if not text.strip() or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"subDirectory_filePath {text!r} must be a path inside the image folder")
    return str(path)


def _box(row: dict[str, str | None]) -> tuple[int, int, int, int]:
    try:
        box = tuple(int((row.get(c) or "").strip()) for c in COLUMNS[1:5])
    except ValueError:
        values = ",".join(repr(row.get(c)) for c in COLUMNS[1:5])
        raise ValueError(f"face box {values} must be four integers") from None
    x, y, width, height = box
    if width <= 0 or height <= 0:
        raise ValueError(f"face box x={x} y={y} width={width} height={height} is empty")
    return x, y, width, height


def _parse(label_file: Path, split: str, seen: dict[str, tuple[str, int]]) -> list[Face]:
    """The file's faces with an emotion; other lines are counted in the log.

    ``seen`` (image -> (line, expression)) spans both files: an image listed twice, in one
    file or in both, is refused (a repeated line or, with two expressions, a conflict).
    """
    reader = csv.DictReader(_lines(label_file))
    missing = set(COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise DataError(
            f"{label_file}:1: the header lacks {', '.join(sorted(missing))}; AffectNet's is "
            "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
            "expression,valence,arousal"
        )
    faces: list[Face] = []
    left_out: Counter = Counter()
    bad: list[str] = []
    repeats: list[str] = []
    for row in reader:
        where = f"{label_file}:{reader.line_num}"
        try:
            name = _name(row.get(COLUMNS[0]) or "")
            code = (row.get("expression") or "").strip()
            if not (code.isdigit() and int(code) < len(EXPRESSIONS)):
                raise ValueError(
                    f"expression {code!r} is not AffectNet's 0..10 "
                    f"({', '.join(f'{i} {e}' for i, e in enumerate(EXPRESSIONS))})"
                )
            expression = int(code)
            box = _box(row) if expression < EMOTION_CODES else (0, 0, 0, 0)
        except ValueError as err:
            bad.append(f"{where}: {err}")
            continue
        if name in seen:
            where0, expression0 = seen[name]
            kind = "repeats" if expression == expression0 else "gives another expression than"
            repeats.append(f"{where} {kind} {where0} ({name})")
            continue
        seen[name] = (where, expression)
        if expression >= EMOTION_CODES:
            left_out[EXPRESSIONS[expression]] += 1
            continue
        faces.append(Face(split, where, name, box, expression))
    _bad_lines_error(bad, f"{','.join(COLUMNS)} with expression 0..10 and a non-empty box")
    if repeats:
        raise DataError(
            f"{len(repeats)} images are listed twice (one image would be trained and tested "
            f"on, or carry two labels): {_shortlist(repeats)}; keep one line of each"
        )
    log_left_out(left_out, f"AffectNet {label_file}", "no emotion")
    return faces


def _crop_one(face: Face, image_dir: Path, target: Path, params: list[int]) -> str | None:
    """Crop ``face`` to ``target``; why it cannot be done (naming file:line), or None."""
    image, why = _decode(image_dir / face.name)
    if image is None:
        return f"{face.where} ({face.name}): {why}"
    height, width = image.shape[:2]
    x, y, w, h = face.box
    if x < 0 or y < 0 or x + w > width or y + h > height:
        return (
            f"{face.where} ({face.name}): face box x={x} y={y} width={w} height={h} is outside "
            f"the {width}x{height} image"
        )
    if not cv2.imwrite(str(target), image[y : y + h, x : x + w], params):
        return f"{face.where}: could not write {target}; check the disk"
    return None


def _crop(faces: list[Face], image_dir: Path, out: Path, fmt: str, workers: int | None) -> None:
    """Every face to ``out/<split>/<its path>.<fmt>`` and the index, all or nothing."""
    absent = [f"{f.where} ({f.name})" for f in faces if not (image_dir / f.name).is_file()]
    if absent:
        raise DataError(
            f"{len(absent)} of {len(faces)} images listed are missing from {image_dir}: "
            f"{_shortlist(absent)}. Restore them, or set data.source.image_dir to the folder "
            "holding them"
        )
    crops: dict[str, Face] = {}
    for face in faces:
        crop = str(PurePosixPath(face.split, face.name).with_suffix(f".{fmt}"))
        if crop in crops:  # a.jpg and a.png in one folder
            raise DataError(
                f"{face.where} ({face.name}) and {crops[crop].where} ({crops[crop].name}) "
                f"would both be cropped to {crop}; rename one of the images"
            )
        crops[crop] = face
    with atomic_dir(out) as tmp:
        for folder in {(tmp / c).parent for c in crops}:
            folder.mkdir(parents=True, exist_ok=True)
        workers = workers or min(16, (os.cpu_count() or 1) + 2)
        with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV releases the GIL
            errors = [
                e
                for e in pool.map(
                    lambda item: _crop_one(item[1], image_dir, tmp / item[0], CROP_FORMATS[fmt]),
                    crops.items(),
                    chunksize=64,
                )
                if e
            ]
        if errors:
            raise DataError(
                f"{len(errors)} of {len(faces)} faces cannot be cropped: {_shortlist(errors)}. "
                "Correct face_x,face_y,face_width,face_height (or the image), or delete the lines"
            )
        write_csv(
            tmp / INDEX_FILE,
            [{"split": f.split, "path": str(out / c), "expression": f.expression}
             for c, f in crops.items()],
        )  # fmt: skip
    log.info("AffectNet: %d faces cropped once into %s", len(crops), out)


def cap_per_class(manifest: Manifest, cap: int, seed: int) -> tuple[Manifest, Counter]:
    """At most ``cap`` images of each class, a seeded choice; (kept, left out per emotion).

    Each class draws from its own seed, so the choice within a class does not depend on
    the other classes; the kept images stay in their order.
    """
    keep = np.ones(len(manifest), dtype=bool)
    removed: Counter = Counter()
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(manifest.labels == c)
        if len(members) > cap:
            chosen = np.random.default_rng([seed, c]).choice(members, cap, replace=False)
            keep[members] = False
            keep[chosen] = True
            removed[EMOTIONS[c]] = len(members) - cap
    return manifest.subset(np.flatnonzero(keep)), removed


def read_affectnet(
    root: str | os.PathLike,
    image_dir: str = IMAGE_DIR,
    drop_classes: Sequence[str] = (),
    max_per_class: int | None = None,
    seed: int = 0,
    crop_format: str = "jpg",
    cache_dir: str | None = None,
    workers: int | None = None,
) -> dict[str, Manifest]:
    """``{train: training.csv, test: validation.csv}`` as Manifests of cropped faces.

    ``image_dir`` (relative to ``root``, or absolute) holds the images the label files name;
    ``max_per_class`` caps each class of the training split (``seed`` decides which faces);
    ``crop_format`` is how crops are stored (jpg at quality 95, or png: lossless, larger).
    """
    if max_per_class is not None and not (
        isinstance(max_per_class, int) and not isinstance(max_per_class, bool) and max_per_class > 0
    ):
        raise ConfigError(
            f"data.source.max_per_class must be an integer >= 1 (or null), got {max_per_class!r}"
        )
    if crop_format not in CROP_FORMATS:
        raise ConfigError(
            f"data.source.crop_format must be one of {', '.join(CROP_FORMATS)}, got {crop_format!r}"
        )
    root = _root(root, "AffectNet")
    images = root / os.path.expanduser(image_dir)
    if not images.is_dir():
        raise DataError(
            f"AffectNet image folder {images} does not exist; set data.source.image_dir to the "
            f"folder holding the images the label files name (default {IMAGE_DIR})"
        )
    files = _label_files(root)
    seen: dict[str, tuple[str, int]] = {}
    faces = [face for split, path in files.items() for face in _parse(path, split, seen)]
    if not faces:
        raise DataError(
            f"{' and '.join(map(str, files.values()))} list no face with an emotion (expression "
            "0..7); check that these are AffectNet's label files"
        )
    contempt = EXPRESSIONS.index("contempt")
    first = next((f for f in faces if f.expression == contempt), None)
    if first is not None:
        _kept("contempt", drop_classes, first.where)  # AffectNet-8 needs an 8-class label space

    stamp = [str(images), crop_format]
    for path in files.values():
        stat = path.stat()
        stamp += [str(path), str(stat.st_size), str(stat.st_mtime_ns)]
    key = hashlib.blake2b("\0".join(stamp).encode(), digest_size=6).hexdigest()
    out = Path(cache_dir or root).expanduser().resolve() / f"affectnet-crops-{key}"
    if not (out / INDEX_FILE).is_file():
        _crop(faces, images, out, crop_format, workers)
    with open(out / INDEX_FILE, newline="") as f:
        index = list(csv.DictReader(f))

    manifests = {}
    for split, label_file in files.items():
        paths: list[str] = []
        labels: list[int] = []
        dropped: Counter = Counter()
        for row in index:
            if row["split"] != split:
                continue
            name = EXPRESSIONS[int(row["expression"])]
            label = _kept(name, drop_classes, f"{label_file} ({row['path']})")
            if label is None:
                dropped[name] += 1
                continue
            paths.append(row["path"])
            labels.append(label)
        log_left_out(dropped, f"AffectNet {label_file}")
        manifests[split] = Manifest(np.array(paths, dtype=np.str_), np.array(labels, np.int64))
    if max_per_class is not None:
        manifests["train"], removed = cap_per_class(manifests["train"], max_per_class, seed)
        why = f"data.source.max_per_class={max_per_class}"
        log_left_out(removed, f"AffectNet {files['train']}", why)
    return _finish(manifests, f"AffectNet {root}")
