"""Source readers: a data set on disk -> ``{split name: Manifest}`` with absolute paths.

Every reader maps labels by emotion *name* (or RAF-DB label 1..7) to the one
canonical order in :mod:`fer_lightning.emotions`, so data sets that order their
classes differently can never be silently mislabeled. Bad input raises a
:class:`DataError` that names the file (and line), how many entries are affected,
and the fix, because a training run should fail at setup, not hours in.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_lightning.data.images import IMAGE_EXTENSIONS, check_on_corrupt, decode_error, is_image
from fer_lightning.data.manifest import UNKNOWN, Manifest
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES, emotion_index
from fer_lightning.errors import DataError

log = logging.getLogger("fer_lightning.data")

RAFDB_LABEL_FILES = ("list_patition_label.txt", "list_partition_label.txt")  # official (sic)
RAFDB_VARIANTS = ("aligned", "original")
SHOW = 5  # how many offending names an error message lists


def _shortlist(items: list[str]) -> str:
    """The first few items of a long list, with how many were left out."""
    head = ", ".join(items[:SHOW])
    return head + (f", ... ({len(items) - SHOW} more)" if len(items) > SHOW else "")


def _root(root: str | os.PathLike, what: str, key: str = "data.root") -> Path:
    """An absolute data root (symlinks kept as the user wrote them), which must exist;
    ``key`` is the setting that names it."""
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not path.is_dir():
        raise DataError(f"{what} root {path} does not exist or is not a directory; check {key}")
    return path


def _finish(manifests: dict[str, Manifest], source: str) -> dict[str, Manifest]:
    """Reject empty splits and warn about classes a split lacks."""
    for split, manifest in manifests.items():
        if len(manifest) == 0:
            raise DataError(f"{source}: split {split!r} has no images; add images or remove it")
    for split, missing in _absent_classes(manifests).items():
        log.warning("%s: split %r has no images of %s", source, split, ", ".join(missing))
    return manifests


def _absent_classes(manifests: Mapping[str, Manifest]) -> dict[str, list[str]]:
    """Per split with any known labels, the emotions it has no image of."""
    absent = {}
    for split, manifest in manifests.items():
        if (manifest.labels >= 0).any():
            counts = manifest.class_counts()
            missing = [EMOTIONS[c] for c in range(NUM_CLASSES) if counts[c] == 0]
            if missing:
                absent[split] = missing
    return absent


def describe(manifests: Mapping[str, Manifest]) -> str:
    """A per-emotion count table, one column per split, with absent classes flagged by ``!``.

    Splits whose labels are all unknown (unlabeled folders) show only their size:
    an empty column there is expected, not a missing class.
    """
    splits = list(manifests)
    counts = {s: manifests[s].class_counts() for s in splits}
    unknown = {s: int((manifests[s].labels == UNKNOWN).sum()) for s in splits}
    absent = _absent_classes(manifests)
    width = max([10, *(len(s) + 2 for s in splits)])
    lines = ["emotion".ljust(10) + "".join(s.rjust(width) for s in splits)]
    for c, emotion in enumerate(EMOTIONS):
        cells = []
        for s in splits:
            flag = " !" if emotion in absent.get(s, ()) else "  "
            cells.append((str(counts[s][c]) + flag).rjust(width))
        lines.append(emotion.ljust(10) + "".join(cells))
    if any(unknown.values()):
        lines.append("unknown".ljust(10) + "".join(f"{unknown[s]}  ".rjust(width) for s in splits))
    lines.append("total".ljust(10) + "".join(f"{len(manifests[s])}  ".rjust(width) for s in splits))
    for split, missing in absent.items():
        lines.append(f"! {split} has no {', '.join(missing)}")
    return "\n".join(lines)


def _missing_error(missing: list[str], total: int, where: Path, listed_in: Path, fix: str) -> None:
    if missing:
        raise DataError(
            f"{len(missing)} of {total} images listed in {listed_in} are missing from {where}: "
            f"{_shortlist(missing)}. {fix}"
        )


def _bad_lines_error(bad: list[str], expected: str) -> None:
    """One error for all bad lines of a label file, so one pass fixes them all."""
    if bad:
        raise DataError(f"{len(bad)} bad lines (expected {expected}): {_shortlist(bad)}")


def _lines(label_file: Path) -> list[str]:
    """The label file's lines; a non-UTF-8 byte is a DataError naming the file and line.

    A UTF-8 byte-order mark (Windows editors add one) is dropped, not read as part of the
    first image's name.
    """
    data = label_file.read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{label_file}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
            "save the label file as UTF-8"
        ) from None


def _check_unique(entries: list[tuple[str, int, str]], label_file: Path) -> None:
    """Each image once: ``entries`` are (image, label, location); repeated images fail.

    A repeat with the same label is a duplicate line; with another label a conflict.
    Either would put one image in two splits (validation leaking into training).
    """
    first: dict[str, tuple[int, str]] = {}
    duplicates, conflicts = [], []
    for name, label, location in entries:
        if name not in first:
            first[name] = (label, location)
            continue
        label0, location0 = first[name]
        if label == label0:
            duplicates.append(f"{location} repeats {location0}")
        else:
            conflicts.append(
                f"{location} labels it {EMOTIONS[label]}, {location0} {EMOTIONS[label0]}"
            )
    if conflicts:
        raise DataError(
            f"{label_file}: {len(conflicts)} images are listed with two different labels: "
            f"{_shortlist(conflicts)}; keep the right line of each"
        )
    if duplicates:
        raise DataError(
            f"{label_file}: {len(duplicates)} duplicate lines (an image listed twice would "
            f"land in two splits): {_shortlist(duplicates)}; delete the repeated lines"
        )


def _raf_label(text: str, location: str) -> int:
    """A RAF-DB label 1..7 -> 0..6, or a DataError naming ``location`` (file:line)."""
    try:
        if not text.strip().isdigit():
            raise ValueError(f"label {text!r} is not an integer")
        return emotion_index(int(text))
    except ValueError as err:
        raise DataError(f"{location}: {err}") from None


def read_rafdb(root: str | os.PathLike, variant: str = "aligned") -> dict[str, Manifest]:
    """RAF-DB's official "basic" layout; ``root`` is the folder holding ``basic/`` or ``basic/``.

    The split of an image is its name's prefix (``train_00001.jpg`` -> ``train``).
    """
    if variant not in RAFDB_VARIANTS:
        raise DataError(f"RAF-DB variant must be one of {RAFDB_VARIANTS}, got {variant!r}")
    root = _root(root, "RAF-DB")
    basic = root / "basic" if (root / "basic").is_dir() else root
    candidates = [basic / "EmoLabel" / name for name in RAFDB_LABEL_FILES]
    label_file = next((p for p in candidates if p.is_file()), None)
    if label_file is None:
        raise DataError(
            f"RAF-DB label file not found: expected {candidates[0]}; point data.root at the "
            "folder that contains basic/ (or at basic/ itself)"
        )
    image_dir = basic / "Image" / variant
    if not image_dir.is_dir():
        raise DataError(f"RAF-DB image folder {image_dir} does not exist (variant={variant!r})")

    entries: dict[str, tuple[list[str], list[int]]] = {}
    seen: list[tuple[str, int, str]] = []
    bad: list[str] = []
    for number, line in enumerate(_lines(label_file), start=1):
        fields = line.split()
        if not fields:
            continue
        location = f"{label_file}:{number}"
        if len(fields) != 2 or "_" not in fields[0]:
            bad.append(f"{location}: malformed line {line.strip()!r}")
            continue
        name, label = fields
        location = f"{location} ({name})"
        split = name.split("_", 1)[0]
        stem, suffix = os.path.splitext(name)
        filename = f"{stem}_aligned{suffix}" if variant == "aligned" else name
        try:
            y = _raf_label(label, location)
        except DataError as err:
            bad.append(str(err))
            continue
        seen.append((name, y, location))
        names, labels = entries.setdefault(split, ([], []))
        names.append(filename)
        labels.append(y)
    _bad_lines_error(bad, "'<split>_<id>.jpg <label 1..7>'")
    if not entries:
        raise DataError(f"{label_file} lists no images")
    _check_unique(seen, label_file)

    present = set(os.listdir(image_dir))
    listed = [n for names, _ in entries.values() for n in names]
    other = "original" if variant == "aligned" else "aligned"
    _missing_error(
        [n for n in listed if n not in present],
        len(listed),
        image_dir,
        label_file,
        f"Restore the images, or use variant={other!r} if only that folder is complete.",
    )
    manifests = {
        split: Manifest(np.array([str(image_dir / n) for n in names]), np.array(labels))
        for split, (names, labels) in entries.items()
    }
    return _finish(manifests, f"RAF-DB {root}")


def _kaggle_paths(root: Path) -> tuple[Path, Path]:
    """(DATASET folder, folder holding the label csvs) for the Kaggle repackaging."""
    dataset = root / "DATASET" if (root / "DATASET").is_dir() else root
    for csv_dir in (root, dataset, dataset.parent):
        if (csv_dir / "train_labels.csv").is_file() or (csv_dir / "test_labels.csv").is_file():
            return dataset, csv_dir
    raise DataError(
        f"RAF-DB (Kaggle) label files train_labels.csv / test_labels.csv not found in {root} "
        f"or {dataset}; point data.root at the folder holding DATASET/ and the csv files"
    )


def read_rafdb_kaggle(root: str | os.PathLike) -> dict[str, Manifest]:
    """The common Kaggle repackaging: ``DATASET/<split>/<1..7>/`` plus ``<split>_labels.csv``.

    Labels come from the csv (RAF-DB 1..7); the image lives in its label's folder.
    """
    root = _root(root, "RAF-DB (Kaggle)")
    dataset, csv_dir = _kaggle_paths(root)
    manifests = {}
    for split in ("train", "test"):
        label_file = csv_dir / f"{split}_labels.csv"
        if not label_file.is_file():
            raise DataError(f"RAF-DB (Kaggle) label file {label_file} does not exist")
        names: list[str] = []
        labels: list[int] = []
        bad: list[str] = []
        reader = csv.DictReader(_lines(label_file))
        if not {"image", "label"} <= set(reader.fieldnames or ()):
            raise DataError(
                f"{label_file}:1: header must name columns 'image,label', got {reader.fieldnames}"
            )
        seen: list[tuple[str, int, str]] = []
        for row in reader:
            location = f"{label_file}:{reader.line_num}"
            if not row["image"] or row["label"] is None:
                bad.append(f"{location}: malformed row {row}")
                continue
            location = f"{location} ({row['image'].strip()})"
            try:
                labels.append(_raf_label(row["label"], location))
            except DataError as err:
                bad.append(str(err))
                continue
            names.append(row["image"].strip())
            seen.append((names[-1], labels[-1], location))
        _bad_lines_error(bad, "'<image>,<label 1..7>'")
        _check_unique(seen, label_file)
        paths = [dataset / split / str(y + 1) / n for n, y in zip(names, labels, strict=True)]
        listing: dict[Path, set[str]] = {}
        for folder in {p.parent for p in paths}:
            listing[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        _missing_error(
            [str(p.relative_to(dataset)) for p in paths if p.name not in listing[p.parent]],
            len(paths),
            dataset,
            label_file,
            "Each image must be in DATASET/<split>/<its label 1..7>/; restore the images.",
        )
        manifests[split] = Manifest(np.array([str(p) for p in paths]), np.array(labels))
    return _finish(manifests, f"RAF-DB (Kaggle) {root}")


def _names_emotion(name: str) -> bool:
    try:
        emotion_index(name)
    except ValueError:
        return False
    return True


def _class_of_folder(folder: Path) -> int:
    try:
        return emotion_index(folder.name)
    except ValueError as err:
        raise DataError(f"class folder {folder}: {err}") from None


def _split_order(folder: Path) -> tuple[int, str]:
    """train, val, test first (in that order), then any other split alphabetically."""
    usual = ("train", "val", "validation", "test")
    name = folder.name.lower()
    return (usual.index(name) if name in usual else len(usual), folder.name)


def read_class_folders(root: str | os.PathLike) -> dict[str, Manifest]:
    """``root/<split>/<class>/*.jpg``: class folders named by emotion (any synonym) or 1..7."""
    root = _root(root, "class-folder data set")
    split_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_split_order
    )
    if not split_dirs:
        raise DataError(f"{root} has no split folders; expected {root}/<split>/<emotion>/*.jpg")
    if all(_names_emotion(p.name) for p in split_dirs):
        raise DataError(
            f"{root} holds class folders ({', '.join(p.name for p in split_dirs)}) directly; "
            f"expected {root}/<split>/<emotion>/: point data.root at the folder above the splits"
        )
    manifests = {}
    for split_dir in split_dirs:
        class_dirs = sorted(
            p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        paths: list[str] = []
        labels: list[int] = []
        for class_dir in class_dirs:
            label = _class_of_folder(class_dir)
            images = sorted(str(p) for p in class_dir.iterdir() if p.is_file() and is_image(p))
            paths += images
            labels += [label] * len(images)
        manifests[split_dir.name] = Manifest(np.array(paths, dtype=np.str_), np.array(labels))
    return _finish(manifests, f"class folders {root}")


def _kept(label: str, drop: Sequence[str], where: str) -> int | None:
    """The class of ``label``, None when the config drops it; an error naming the way out
    for a class outside the 7 basic emotions."""
    if label in drop:
        return None
    try:
        return emotion_index(label)
    except ValueError:
        raise DataError(
            f"{where}: {label!r} is not one of the 7 basic emotions ({', '.join(EMOTIONS)}); "
            f"leave its faces out with data.source.drop_classes=[{label}]"
        ) from None


def log_left_out(counts: Counter, where: str, why: str = "data.source.drop_classes") -> None:
    """One log line counting the faces a reader leaves out, by class or reason, and why."""
    if counts:
        listed = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
        log.info("%s: left out (%s): %s", where, why, listed)


# the codes 0..7 of CK+'s Emotion/*_emotion.txt files
CKPLUS_CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness",
                "surprise")  # fmt: skip
CKPLUS_IMAGES = "cohn-kanade-images"  # the original layout's image folder, beside Emotion/


def read_ckplus(
    root: str | os.PathLike,
    drop_classes: Sequence[str] = (),
    peak_frames: int = 3,
    neutral_frames: int = 0,
) -> dict[str, Manifest]:
    """CK+ in either layout: one split, ``train``.

    - CK+48: ``root/<emotion>/S010_004_00000017.png``.
    - The original release: ``root/cohn-kanade-images/S005/001/*.png`` with
      ``root/Emotion/S005/001/S005_001_00000011_emotion.txt`` (code 0..7) for the labeled
      sequences. Each labeled sequence gives its last ``peak_frames`` frames as its emotion
      (3, as CK+48 was made) and its first ``neutral_frames`` frames as neutral (0, as CK+48).

    CK+ has no official test split: the literature cross-validates by subject
    (``data.folds``, the subject from the file name). Contempt is not a basic emotion:
    ``drop_classes`` must name it (``conf/data/ckplus.yaml`` does), and the log counts it.
    """
    root = _root(root, "CK+ data set")
    if (root / "Emotion").is_dir():
        return _ckplus_sequences(root, drop_classes, peak_frames, neutral_frames)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{root} has no class folders; expected {root}/<emotion>/*.png (CK+48) or "
            f"{root}/Emotion/ and {root}/{CKPLUS_IMAGES}/ (the original release)"
        )
    paths: list[str] = []
    labels: list[int] = []
    dropped: Counter = Counter()
    for class_dir in class_dirs:
        images = sorted(str(p) for p in class_dir.iterdir() if p.is_file() and is_image(p))
        label = _kept(class_dir.name, drop_classes, f"class folder {class_dir}")
        if label is None:
            dropped[class_dir.name] += len(images)
            continue
        paths += images
        labels += [label] * len(images)
    log_left_out(dropped, f"CK+48 {root}")
    return _finish(
        {"train": Manifest(np.array(paths, dtype=np.str_), np.array(labels))}, f"CK+ {root}"
    )


def _ckplus_code(label_file: Path) -> str:
    text = label_file.read_text(errors="replace").strip()
    try:
        code = float(text)
    except ValueError:
        code = -1.0
    if not code.is_integer() or not 0 <= code < len(CKPLUS_CODES):
        raise DataError(
            f"{label_file}:1: {text[:40]!r} is not a CK+ emotion code 0..{len(CKPLUS_CODES) - 1} "
            f"({', '.join(CKPLUS_CODES)})"
        )
    return CKPLUS_CODES[int(code)]


def _ckplus_sequences(
    root: Path, drop_classes: Sequence[str], peak_frames: int, neutral_frames: int
) -> dict[str, Manifest]:
    """The original layout: the labeled sequences' last (and first) frames."""
    for name, value in (("peak_frames", peak_frames), ("neutral_frames", neutral_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"data.source.{name}={value!r}: must be an integer >= 0")
    images_dir = root / CKPLUS_IMAGES
    label_files = sorted((root / "Emotion").rglob("*_emotion.txt"))
    if not label_files:
        raise DataError(f"{root}/Emotion holds no *_emotion.txt label file (CK+'s layout)")
    paths: list[str] = []
    labels: list[int] = []
    dropped: Counter = Counter()
    neutral = emotion_index("neutral")
    for label_file in label_files:
        sequence = label_file.parent.relative_to(root / "Emotion")  # S005/001
        frames = sorted(p for p in (images_dir / sequence).glob("*") if is_image(p))
        if len(frames) < max(peak_frames, 1) + neutral_frames:
            raise DataError(
                f"{label_file}: its sequence {images_dir / sequence} has {len(frames)} frames, "
                f"fewer than data.source.peak_frames + neutral_frames "
                f"({peak_frames} + {neutral_frames}); is {CKPLUS_IMAGES}/ beside Emotion/?"
            )
        emotion = _ckplus_code(label_file)
        label = _kept(emotion, drop_classes, f"{label_file}:1")
        peaks = [str(p) for p in frames[len(frames) - peak_frames :]] if peak_frames else []
        if label is None:
            dropped[emotion] += len(peaks)
        else:
            paths += peaks
            labels += [label] * len(peaks)
        paths += [str(p) for p in frames[:neutral_frames]]
        labels += [neutral] * neutral_frames
    log_left_out(dropped, f"CK+ {root}")
    return _finish(
        {"train": Manifest(np.array(paths, dtype=np.str_), np.array(labels))}, f"CK+ {root}"
    )


JAFFE_CODES = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness",
               "NE": "neutral", "SA": "sadness", "SU": "surprise"}  # fmt: skip


def read_jaffe(root: str | os.PathLike) -> dict[str, Manifest]:
    """JAFFE: ``root/KA.AN1.39.tiff`` (subject KA, anger, take 1): one split, ``train``.

    The emotion is the second field's letters; JAFFE has no test split, so it is
    cross-validated by subject (``data.folds``, ``data.subject_pattern``).
    """
    root = _root(root, "JAFFE data set")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image(p))
    if not files:
        raise DataError(f"{root} holds no images; expected JAFFE's files, e.g. KA.AN1.39.tiff")
    paths: list[str] = []
    labels: list[int] = []
    for path in files:
        fields = path.name.split(".")
        code = fields[1][:2].upper() if len(fields) >= 3 else ""
        if code not in JAFFE_CODES:
            raise DataError(
                f"{path}: not a JAFFE name (<subject>.<emotion code><take>.<number>.<ext>, "
                f"the code one of {', '.join(JAFFE_CODES)})"
            )
        paths.append(str(path))
        labels.append(emotion_index(JAFFE_CODES[code]))
    return _finish(
        {"train": Manifest(np.array(paths, dtype=np.str_), np.array(labels))}, f"JAFFE {root}"
    )


def read_unlabeled_folder(root: str | os.PathLike) -> Manifest:
    """Every image under ``root`` (recursively), labels UNKNOWN: extra faces to pseudo-label."""
    root = _root(root, "unlabeled image folder", "data.unlabeled_dir")
    paths = sorted(
        os.path.join(d, n)
        for d, _, files in os.walk(root, followlinks=True)
        for n in files
        if is_image(Path(n))
    )
    if not paths:
        raise DataError(
            f"unlabeled folder {root} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
            "check data.unlabeled_dir"
        )
    return Manifest(np.array(paths), np.full(len(paths), UNKNOWN, dtype=np.int64))


def check_images(
    manifest: Manifest, on_corrupt: str = "fail", min_side: int = 1, workers: int | None = None
) -> Manifest:
    """Decode every image once before training; fail on (or skip) unusable files.

    Unusable: unreadable, truncated, or smaller than ``min_side`` pixels on a side. Run
    at setup so a bad file stops the run in seconds rather than crashing a DataLoader
    worker mid-epoch. Decoding releases the GIL, so threads parallelise it.
    """
    check_on_corrupt(on_corrupt)
    if len(manifest) == 0:
        return manifest
    workers = workers or min(16, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = list(
            pool.map(lambda p: decode_error(p, min_side), manifest.paths.tolist(), chunksize=64)
        )
    bad = np.array([e is not None for e in errors])
    if not bad.any():
        return manifest
    report = _shortlist([f"{p} ({e})" for p, e in zip(manifest.paths, errors, strict=True) if e])
    if on_corrupt == "fail":
        raise DataError(
            f"{int(bad.sum())} of {len(manifest)} images cannot be used: {report}. "
            "Replace or delete them, or set data.on_corrupt=skip to leave them out"
        )
    log.warning("skipping %d of %d unusable images: %s", bad.sum(), len(manifest), report)
    return manifest.subset(~bad)
