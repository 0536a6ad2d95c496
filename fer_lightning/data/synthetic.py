"""The embedded default data set: drawn faces with FACS expressions, in RAF-DB's layout.

Real FER data cannot be shipped, so a data set is generated from a seed and written
exactly like RAF-DB's official "basic" release; the same reader then serves both. The
faces are drawn by :mod:`fer_lightning.data.synthetic_faces`, each with a per-image
expression intensity.

Every image is drawn from its own RNG, derived from ``(seed, split, index)``, so the
output is byte-identical for any number of worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from filelock import FileLock

from fer_lightning.data.manifest import Manifest
from fer_lightning.data.sources import read_rafdb
from fer_lightning.data.synthetic_faces import render_face
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES, RAFDB_TEST_COUNTS, RAFDB_TRAIN_COUNTS
from fer_lightning.errors import DataError
from fer_lightning.io import atomic_dir

VERSION = 2  # bump whenever the drawing changes, so cached sets are regenerated
META_FILE = "synthetic.json"
LABEL_FILE = Path("basic/EmoLabel/list_patition_label.txt")  # RAF-DB's spelling
IMAGE_DIR = Path("basic/Image/aligned")
TRUTH_FILE = "synthetic_labels.csv"  # clean labels and intensities, to audit label noise

# Expression intensity per image: Beta(2, 1.5) puts ~7 % of faces below 0.2 and ~15 %
# below 0.3, where they are hard to tell from neutral; the median is ~0.59.
_INTENSITY_BETA = (2.0, 1.5)

_SPLIT_IDS = {"train": 0, "test": 1}
_NAME_DIGITS = {"train": 5, "test": 4}
# spawn_key prefixes of the independent RNG streams (see numpy SeedSequence)
_STREAM_IMAGE, _STREAM_ORDER, _STREAM_NOISE = 0, 1, 2

# --------------------------------------------------------------------------- data set


def class_counts(n: int, reference: tuple[int, ...]) -> np.ndarray:
    """Split ``n`` images over classes in ``reference`` proportions, summing exactly to ``n``.

    Largest-remainder rounding; every class gets at least one image when ``n`` allows.
    """
    ref = np.asarray(reference, dtype=np.float64)
    quota = n * ref / ref.sum()
    counts = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - counts), kind="stable")
    counts[by_remainder[: n - counts.sum()]] += 1
    if n >= len(ref):
        while (counts == 0).any():
            counts[np.argmax(counts)] -= 1
            counts[np.argmin(counts)] += 1
    return counts


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _split_labels(seed: int, split: str, n: int, label_noise: float) -> tuple[np.ndarray, ...]:
    """(clean labels, written labels) of a split; noise replaces labels by another class."""
    ref = RAFDB_TRAIN_COUNTS if split == "train" else RAFDB_TEST_COUNTS
    sid = _SPLIT_IDS[split]
    clean = _rng(seed, _STREAM_ORDER, sid).permutation(
        np.repeat(np.arange(NUM_CLASSES), class_counts(n, ref))
    )
    noisy = clean.copy()
    rng = _rng(seed, _STREAM_NOISE, sid)
    flip = rng.choice(n, size=int(round(label_noise * n)), replace=False)
    noisy[flip] = (clean[flip] + rng.integers(1, NUM_CLASSES, len(flip))) % NUM_CLASSES
    return clean, noisy


def _image_name(split: str, index: int, n: int) -> str:
    return f"{split}_{index + 1:0{max(_NAME_DIGITS[split], len(str(n)))}d}"


def _write_image(task: tuple[int, str, int, int, int, str]) -> float:
    """Render and write one image; returns its expression intensity."""
    seed, split, index, label, size, path = task
    rng = _rng(seed, _STREAM_IMAGE, _SPLIT_IDS[split], index)
    intensity = float(rng.beta(*_INTENSITY_BETA))
    rgb = render_face(rng, label, intensity, size)
    quality = int(rng.integers(60, 96))
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    Path(path).write_bytes(buf.tobytes())
    return intensity


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; nested threads only contend


def _cache_key(n_train: int, n_test: int, seed: int, image_size: int, label_noise: float) -> dict:
    return {
        "version": VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "image_size": image_size,
        "label_noise": label_noise,
    }


def _read_meta(root: Path) -> dict | None:
    """The stored generation parameters; None if there is no data set yet.

    Raises :class:`DataError` (a ``ValueError``) for a non-empty directory that is not
    a synthetic set, so real data is never overwritten.
    """
    meta = root / META_FILE
    if meta.is_file():
        try:
            return json.loads(meta.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(
                f"{meta}: not a fer-synth record ({err}); refusing to overwrite {root}: "
                "choose another directory or delete it yourself"
            ) from None
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(
            f"{root} exists but is not a synthetic data set (no {META_FILE}); "
            "refusing to overwrite it: choose another directory or delete it yourself"
        )
    return None


def _written_paths(meta: dict) -> set[Path]:
    """Every file and folder (relative) that :func:`generate_rafdb` wrote for ``meta``."""
    paths = {Path(META_FILE), Path(TRUTH_FILE), *LABEL_FILE.parents, LABEL_FILE}
    paths |= set(IMAGE_DIR.parents) | {IMAGE_DIR}
    for split in _SPLIT_IDS:
        n = int(meta.get(f"n_{split}", 0))
        paths |= {IMAGE_DIR / f"{_image_name(split, i, n)}_aligned.jpg" for i in range(n)}
    return paths - {Path(".")}


def _check_replaceable(root: Path, meta: dict | None) -> None:
    """Refuse to replace a synthetic set that holds anything fer-synth did not write there.

    Replacing the set deletes its folder: a user's own file in it (notes, a model, more
    images) must not go with it.
    """
    if meta is None:
        return
    written = _written_paths(meta)
    foreign = sorted(p for p in root.rglob("*") if p.relative_to(root) not in written)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise DataError(
            f"{root} holds files fer-synth did not write, e.g. {foreign[0]}{more}; replacing "
            "the data set would delete them: move them out, or choose another directory"
        )


def generate_rafdb(
    root: str | os.PathLike,
    *,
    n_train: int = 3000,
    n_test: int = 1000,
    seed: int = 0,
    image_size: int = 100,
    label_noise: float = 0.0,
    workers: int = 1,
) -> Path:
    """(Re)generate the synthetic set at ``root`` in RAF-DB's layout; returns ``root``.

    Written into a temp directory beside ``root`` and renamed into place at the end,
    so a killed run never leaves a partial set that looks complete. Output bytes
    depend only on the parameters, never on ``workers``.
    """
    root = Path(root)
    if n_train < 0 or n_test < 0 or image_size < 8 or not 0.0 <= label_noise <= 1.0:
        raise ValueError(
            f"need n_train, n_test >= 0, image_size >= 8 and 0 <= label_noise <= 1; got "
            f"{n_train=}, {n_test=}, {image_size=}, {label_noise=}"
        )
    _check_replaceable(root, _read_meta(root))
    with atomic_dir(root) as tmp:
        (tmp / IMAGE_DIR).mkdir(parents=True)
        (tmp / LABEL_FILE).parent.mkdir(parents=True)
        splits = {}
        tasks = []
        for split, n in (("train", n_train), ("test", n_test)):
            clean, noisy = _split_labels(seed, split, n, label_noise)
            names = [_image_name(split, i, n) for i in range(n)]
            splits[split] = (names, clean, noisy)
            tasks += [
                (
                    seed,
                    split,
                    i,
                    int(clean[i]),
                    image_size,
                    str(tmp / IMAGE_DIR / f"{name}_aligned.jpg"),
                )
                for i, name in enumerate(names)
            ]
        if workers > 1 and len(tasks) > 1:
            ctx = multiprocessing.get_context("spawn")  # safe even if torch threads are running
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                intensities = pool.map(
                    _write_image, tasks, chunksize=max(1, len(tasks) // (8 * workers))
                )
        else:
            intensities = [_write_image(t) for t in tasks]

        label_lines, truth_lines = [], ["image,emotion,label,clean_label,intensity"]
        k = 0
        for names, clean, noisy in splits.values():
            for name, c, y in zip(names, clean.tolist(), noisy.tolist(), strict=True):
                label_lines.append(f"{name}.jpg {y + 1}")
                level = 0.0 if EMOTIONS[c] == "neutral" else intensities[k]
                truth_lines.append(f"{name}.jpg,{EMOTIONS[c]},{y + 1},{c + 1},{level:.4f}")
                k += 1
        (tmp / LABEL_FILE).write_text("\n".join(label_lines) + "\n")
        (tmp / TRUTH_FILE).write_text("\n".join(truth_lines) + "\n")
        meta = _cache_key(n_train, n_test, seed, image_size, label_noise)
        meta["counts"] = {
            split: dict(
                zip(EMOTIONS, np.bincount(noisy, minlength=NUM_CLASSES).tolist(), strict=True)
            )
            for split, (_, _, noisy) in splits.items()
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return root


@dataclass(frozen=True)
class SyntheticRafdb:
    """A data source: ``source(root)`` generates the set into ``root`` (cached) and reads it.

    The set is in RAF-DB's official layout, so the RAF-DB reader serves it.
    """

    n_train: int = 3000
    n_test: int = 1000
    seed: int = 0
    image_size: int = 100
    label_noise: float = 0.0
    workers: int = 1

    def ensure(self, root: str | os.PathLike) -> Path:
        """Generate unless ``root`` already holds a set with these parameters.

        A set with other parameters is replaced; a directory that is not a synthetic
        set raises ``ValueError``. A file lock beside ``root`` makes concurrent runs
        (e.g. a parallel sweep) generate once and share the result.
        """
        root = Path(root)
        params = asdict(self)
        workers = params.pop("workers")
        key = _cache_key(**params)
        root.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(root.parent / f".{root.name}.lock"):
            meta = _read_meta(root)
            if meta is not None and {k: meta.get(k) for k in key} == key:
                return root
            return generate_rafdb(root, **params, workers=workers)

    def __call__(self, root: str | os.PathLike) -> dict[str, Manifest]:
        """Manifests by split, like every other source (see ``FERDataModule``)."""
        return read_rafdb(self.ensure(root))
