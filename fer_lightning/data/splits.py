"""The split protocol: train -> labeled / unlabeled / val, seeded and stratified per class.

RAF-DB has no validation split, and checkpoints must never be chosen on the test
set, so validation is carved from train first. The label budget (N per class or a
fraction) is then taken from what is left, and the rest becomes the unlabeled
pool; the pool keeps its true labels so pseudo-label precision can be audited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_lightning.data.manifest import UNKNOWN, Manifest
from fer_lightning.data.sources import describe
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import DataError

log = logging.getLogger("fer_lightning.data")

SPLIT_NAMES = ("labeled", "unlabeled", "val", "test")


@dataclass(frozen=True)
class Splits:
    """The four manifests a run trains, pseudo-labels, selects and tests on."""

    labeled: Manifest
    unlabeled: Manifest
    val: Manifest
    test: Manifest

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``directory/{labeled,unlabeled,val,test}.csv``, each atomically."""
        for name in SPLIT_NAMES:
            getattr(self, name).to_csv(Path(directory) / f"{name}.csv")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Splits:
        """Read a saved split back, so a resumed run trains on exactly the same images."""
        directory = Path(directory)
        missing = [f"{n}.csv" for n in SPLIT_NAMES if not (directory / f"{n}.csv").is_file()]
        if missing:
            raise DataError(
                f"split directory {directory} lacks {', '.join(missing)}; delete the directory "
                "to have the split made again from the source"
            )
        return cls(**{n: Manifest.from_csv(directory / f"{n}.csv") for n in SPLIT_NAMES})

    def pool(self, include_test: bool = False) -> Manifest:
        """The images a teacher labels: the unlabeled split, and transductively the test one.

        Their labels (unknown, or hidden test labels) are for the audit only."""
        return self.unlabeled.concat(self.test) if include_test else self.unlabeled

    def summary(self) -> str:
        """Per-split per-emotion counts (absent classes flagged)."""
        return describe({n: getattr(self, n) for n in SPLIT_NAMES})


def _round(x: float) -> int:
    """Round half up: numpy/Python round half to even, which makes counts surprising."""
    return math.floor(x + 0.5)


Budget = int | Mapping[str, int]  # labels per class: one number, or one per emotion by name


def _count(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1


def class_budgets(labels_per_class: Budget) -> list[int]:
    """Labels per class in :data:`EMOTIONS` order: one number for all, or a mapping by
    emotion name naming every emotion (Ada-CM's budgets cap fear below the rest)."""
    if not isinstance(labels_per_class, Mapping):
        if not _count(labels_per_class):
            raise ValueError(
                f"data.labels_per_class must be an integer >= 1 or a mapping from emotion "
                f"name to one, got {labels_per_class!r}"
            )
        return [int(labels_per_class)] * NUM_CLASSES
    unknown = sorted(set(map(str, labels_per_class)) - set(EMOTIONS))
    missing = [e for e in EMOTIONS if e not in labels_per_class]
    if unknown or missing:
        raise ValueError(
            f"data.labels_per_class: {'unknown emotion(s) ' + str(unknown) if unknown else ''}"
            f"{'; ' if unknown and missing else ''}"
            f"{'no budget for ' + ', '.join(missing) if missing else ''}; "
            f"name each of {', '.join(EMOTIONS)} once"
        )
    bad = {e: v for e, v in labels_per_class.items() if not _count(v)}
    if bad:
        raise ValueError(f"data.labels_per_class: budgets must be integers >= 1, got {bad}")
    return [int(labels_per_class[e]) for e in EMOTIONS]


def validate_protocol(
    labels_per_class: Budget | None, label_fraction: float | None, val_fraction: float
) -> None:
    if labels_per_class is not None and label_fraction is not None:
        raise ValueError(
            "give either data.labels_per_class or data.label_fraction, not both "
            f"(got {labels_per_class} and {label_fraction}); set the other to null"
        )
    if labels_per_class is not None:
        class_budgets(labels_per_class)
    if label_fraction is not None and not 0 < label_fraction <= 1:
        raise ValueError(f"data.label_fraction must be in (0, 1], got {label_fraction!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction!r}")


def _labeled(rest: int, budget: int | None, label_fraction: float | None) -> int:
    """How many of a class's ``rest`` training faces (after validation) are labeled."""
    if budget is not None:
        return min(budget, rest)
    if label_fraction is not None:
        return max(_round(label_fraction * rest), 1)
    return rest


def budget_size(
    counts: Sequence[int], labels_per_class: Budget | None, label_fraction: float | None
) -> int:
    """The labeled faces a budget takes from ``counts`` (each emotion's training faces after
    validation), by :func:`make_splits`' rule: a study's ceiling sizes its schedule by it."""
    budgets = None if labels_per_class is None else class_budgets(labels_per_class)
    return sum(
        _labeled(int(n), None if budgets is None else budgets[c], label_fraction)
        for c, n in enumerate(counts)
        if n
    )


def make_splits(
    train: Manifest,
    test: Manifest,
    *,
    labels_per_class: Budget | None = None,
    label_fraction: float | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    extra_unlabeled: Manifest | None = None,
) -> Splits:
    """Split ``train`` into labeled / unlabeled / val, per class, reproducibly from ``seed``.

    Each class is shuffled once and cut in order: val first, then the labeled
    budget, then the pool. So for one seed the validation set does not depend on
    the budget, and smaller budgets are subsets of larger ones: runs that differ
    only in ``labels_per_class`` compare on the same validation images.

    - val: ``round(val_fraction * n)`` of a class, at least 1 when it has >= 2
      images, and never all of it (the class must stay trainable).
    - labeled: ``labels_per_class`` of the rest (one number, or one per emotion by name;
      all of it, with a warning, if fewer), or ``round(label_fraction * rest)`` (at least
      1), or all the rest.
    - unlabeled: what remains, with ``extra_unlabeled`` appended.

    The input order does not matter (train is sorted by path first), and each
    output is sorted by path.
    """
    validate_protocol(labels_per_class, label_fraction, val_fraction)
    if len(train) == 0:
        raise DataError("the training split is empty; nothing to split")
    unknown = int((train.labels == UNKNOWN).sum())
    if unknown:
        raise DataError(
            f"{unknown} of {len(train)} training images have no label; the training split "
            "must be labeled (put unlabeled images in data.unlabeled_dir)"
        )
    train = train.subset(np.argsort(train.paths, kind="stable"))
    rng = np.random.default_rng(seed)
    budgets = None if labels_per_class is None else class_budgets(labels_per_class)
    val_idx, labeled_idx, pool_idx = [], [], []
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(train.labels == c)
        n = len(members)
        if n == 0:
            continue
        order = rng.permutation(members)
        n_val = min(max(_round(val_fraction * n), 1 if val_fraction > 0 else 0), n - 1)
        rest = n - n_val
        n_labeled = _labeled(rest, None if budgets is None else budgets[c], label_fraction)
        if budgets is not None and rest < budgets[c]:
            log.warning(
                "%s has only %d training images after validation, fewer than its "
                "data.labels_per_class budget %d: all of them are labeled, none go to the pool",
                EMOTIONS[c],
                rest,
                budgets[c],
            )
        val_idx.append(order[:n_val])
        labeled_idx.append(order[n_val : n_val + n_labeled])
        pool_idx.append(order[n_val + n_labeled :])

    def pick(parts: list[np.ndarray]) -> Manifest:
        return train.subset(np.sort(np.concatenate(parts)))  # train is path-sorted

    splits = Splits(
        labeled=pick(labeled_idx),
        unlabeled=pick(pool_idx),
        val=pick(val_idx),
        test=test.subset(np.argsort(test.paths, kind="stable")),
    )
    if extra_unlabeled is not None:
        check_unlabeled_dir(splits, extra_unlabeled)
        splits = dataclasses.replace(splits, unlabeled=splits.unlabeled.concat(extra_unlabeled))
    check_disjoint(splits)
    check_copies(splits)
    return splits


def _listed(paths: list[str], limit: int = 3) -> str:
    """The first ``limit`` entries, then how many more."""
    more = f", ... ({len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def check_unlabeled_dir(splits: Splits, extra: Manifest) -> None:
    """A ``data.unlabeled_dir`` holding the data set's own images (by real path) is refused
    as such: the fix is another folder, not an edit of the label files."""
    owner = {
        os.path.realpath(path): name
        for name in SPLIT_NAMES
        for path in getattr(splits, name).paths.tolist()
    }
    own = [
        f"{path} (a {owner[real]} image)"
        for path in extra.paths.tolist()
        if (real := os.path.realpath(path)) in owner
    ]
    if own:
        raise DataError(
            f"data.unlabeled_dir holds {len(own)} of the data set's own images, which would "
            f"be pseudo-labeled as if unseen: {_listed(own)}. Point data.unlabeled_dir at a "
            "folder of other faces (not the data set's train or image folder), or leave it unset"
        )


def check_disjoint(splits: Splits) -> None:
    """Every image in one split only (by real path): no validation or test image trains.

    Catches an image listed twice, a test image also listed in train, and an
    ``unlabeled_dir`` that holds the data set's own images.
    """
    owner: dict[str, str] = {}
    clashes: list[str] = []
    for name in SPLIT_NAMES:
        for path in getattr(splits, name).paths.tolist():
            real = os.path.realpath(path)
            if real in owner:
                clashes.append(f"{path} ({owner[real]} and {name})")
            else:
                owner[real] = name
    if clashes:
        more = f", ... ({len(clashes) - 5} more)" if len(clashes) > 5 else ""
        head = ", ".join(clashes[:5]) + more
        raise DataError(
            f"{len(clashes)} images are in two splits at once, so evaluation would see training "
            f"images: {head}. Remove the repeats from the label files, and point "
            "data.unlabeled_dir at a folder that holds none of the data set's own images"
        )


def _file_digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).digest()
    except OSError:
        return None  # reported by the image check, not here


def identical_files(paths: list[str], workers: int | None = None) -> list[list[int]]:
    """Groups (indices into ``paths``) of files with identical bytes, each in path order.

    Cheap on tens of thousands of small files: one ``stat`` each, and only files that
    share their size with another are read and hashed (blake2b, in threads).
    """
    by_size: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        with contextlib.suppress(OSError):
            by_size.setdefault(os.stat(path).st_size, []).append(i)
    candidates = [i for group in by_size.values() if len(group) > 1 for i in group]
    workers = workers or min(16, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = pool.map(_file_digest, [paths[i] for i in candidates], chunksize=64)
        by_digest: dict[bytes, list[int]] = {}
        for i, digest in zip(candidates, digests, strict=True):
            if digest is not None:
                by_digest.setdefault(digest, []).append(i)
    return sorted(sorted(g) for g in by_digest.values() if len(g) > 1)


ON_DUPLICATE: tuple[str, ...] = ("fail", "drop")


def drop_copies(
    train: Manifest, test: Manifest, extra: Manifest | None = None
) -> tuple[Manifest, Manifest, Manifest | None]:
    """Keep one file of each group of byte-identical images (``data.on_duplicate=drop``).

    FER2013, for one, ships 1,531 such copies, 278 of them shared by train and test. The
    kept copy is the test set's when there is one (the benchmark's test set stays whole and
    no copy of it trains), else train's, else the extra pool's, the first by path; a group
    whose labels disagree keeps no training copy at all. Logs what was dropped.
    """
    parts = [("test", test), ("train", train), ("pool", extra)]
    parts = [(name, m) for name, m in parts if m is not None]
    paths = [p for _, m in parts for p in m.paths.tolist()]
    owner = [(k, i) for k, (_, m) in enumerate(parts) for i in range(len(m))]
    drop = [np.zeros(len(m), bool) for _, m in parts]
    conflicts = 0
    for group in identical_files(paths):
        members = sorted(group, key=lambda j: (owner[j][0], paths[j]))  # test first
        labels = {int(parts[owner[j][0]][1].labels[owner[j][1]]) for j in members} - {UNKNOWN}
        keep = members[0]
        if len(labels) > 1:
            conflicts += 1
            if owner[keep][0] != 0:  # no test copy: the face's label is unknown, train on none
                keep = None
        for j in members:
            if j != keep:
                drop[owner[j][0]][owner[j][1]] = True
    kept = {name: m.subset(np.flatnonzero(~d)) for (name, m), d in zip(parts, drop, strict=True)}
    counts = {name: int(d.sum()) for (name, _), d in zip(parts, drop, strict=True)}
    if sum(counts.values()):
        log.warning(
            "data.on_duplicate=drop: %d byte-identical copies left out (%s); %d groups of "
            "copies disagreed on the label",
            sum(counts.values()),
            ", ".join(f"{name} {n}" for name, n in counts.items()),
            conflicts,
        )
    return kept["train"], kept["test"], kept.get("pool")


def check_copies(splits: Splits) -> None:
    """No image is a byte-for-byte copy of another, in any split or the pool.

    A copy across splits lets evaluation see a training image under another name; with
    two labels, one face teaches two emotions; within a split, it counts twice.
    """
    paths, where = [], []
    for name in SPLIT_NAMES:
        manifest = getattr(splits, name)
        paths += manifest.paths.tolist()
        where += [(name, y) for y in manifest.labels.tolist()]
    pairs, harms = [], set()
    for group in identical_files(paths):
        first = group[0]
        for other in group[1:]:
            (split_a, y_a), (split_b, y_b) = where[first], where[other]
            if split_a != split_b:
                harms.add("evaluation would see training images")
            if UNKNOWN not in (y_a, y_b) and y_a != y_b:
                harms.add("one face would carry two labels")
            if split_a == split_b:
                harms.add("a face would count twice")
            a = f"{split_a}, {EMOTIONS[y_a] if y_a >= 0 else 'unlabeled'}"
            b = f"{split_b}, {EMOTIONS[y_b] if y_b >= 0 else 'unlabeled'}"
            pairs.append(f"{paths[first]} ({a}) = {paths[other]} ({b})")
    if pairs:
        more = f", ... ({len(pairs) - 5} more)" if len(pairs) > 5 else ""
        raise DataError(
            f"{len(pairs)} image{' is a copy' if len(pairs) == 1 else 's are copies'} of "
            "others (identical bytes), so "
            f"{' and '.join(sorted(harms))}: {', '.join(pairs[:5])}{more}. Delete the copies "
            "(keep one file per face), and remove their lines from the label files, or set "
            "data.on_duplicate=drop to leave them out (a test copy is kept)"
        )
