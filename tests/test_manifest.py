"""Manifest's optional target distributions: kept through subset, concat, the split protocol
and the CSV round trip (a resumed run re-reads its split from those files)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fer_lightning.data.manifest import UNKNOWN, Manifest
from fer_lightning.data.splits import Splits, make_splits
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES, PROB_COLUMNS
from fer_lightning.errors import DataError
from fer_lightning.teacher_cache import split_fingerprint


def row(**shares: float) -> list[float]:
    """A target row by emotion name: row(happiness=2/3, surprise=1/3)."""
    return [shares.get(e, 0.0) for e in EMOTIONS]


HAPPY, SURPRISE, NEUTRAL = (EMOTIONS.index(e) for e in ("happiness", "surprise", "neutral"))
SOFT = Manifest(
    np.array(["/d/a.png", "/d/b.png", "/d/c.png"]),
    np.array([HAPPY, SURPRISE, NEUTRAL]),
    np.array(
        [row(happiness=2 / 3, surprise=1 / 3), row(surprise=1 / 2, happiness=1 / 2), row(neutral=1)]
    ),
)
HARD = Manifest(np.array(["/d/x.png", "/d/y.png"]), np.array([NEUTRAL, UNKNOWN]))


def test_targets_are_float32_and_default_to_the_labels_one_hot():
    assert SOFT.targets is not None and SOFT.targets.dtype == np.float32
    assert np.array_equal(SOFT.target_rows(), SOFT.targets)
    assert HARD.targets is None
    hard = HARD.target_rows()  # an unknown label has no target: a row of zeros
    assert hard.shape == (2, NUM_CLASSES) and hard[0, NEUTRAL] == 1 and hard.sum() == 1


def test_subset_and_concat_keep_targets():
    part = SOFT.subset(np.array([2, 0]))
    assert part.paths.tolist() == ["/d/c.png", "/d/a.png"]
    assert np.array_equal(part.targets, SOFT.targets[[2, 0]])
    assert HARD.subset(np.array([0])).targets is None
    assert HARD.concat(HARD).targets is None  # no targets anywhere: none made up
    both = SOFT.concat(HARD)  # the other manifest's labels join one-hot
    assert both.labels.tolist() == [HAPPY, SURPRISE, NEUTRAL, NEUTRAL, UNKNOWN]
    assert np.array_equal(both.targets[:3], SOFT.targets)
    assert np.array_equal(both.targets[3:], HARD.target_rows())
    assert np.array_equal(HARD.concat(SOFT).targets[2:], SOFT.targets)


@pytest.mark.parametrize(
    ("labels", "targets", "match"),
    [
        ([HAPPY], [row(happiness=0.5)], r"not distributions"),  # sums to 1/2
        ([SURPRISE], [row(happiness=0.6, surprise=0.4)], r"not distributions peaking"),
        ([UNKNOWN], [row(neutral=1)], r"unknown labels' rows are 0"),
        ([HAPPY], [row(happiness=np.nan)], r"not distributions"),
        ([HAPPY], [[1.0] * 3], r"targets \(1, 3\) must be \(1, 7\)"),
    ],
)
def test_targets_must_be_distributions_peaking_at_the_label(labels, targets, match):
    with pytest.raises(ValueError, match=match):
        Manifest(np.array(["/d/a.png"]), np.array(labels), np.array(targets))


def test_csv_round_trip_is_exact_with_and_without_targets(tmp_path):
    mixed = SOFT.concat(HARD)
    mixed.to_csv(tmp_path / "soft.csv")
    lines = (tmp_path / "soft.csv").read_text().splitlines()
    assert lines[0] == ",".join(["path", "label", "emotion", *PROB_COLUMNS])
    assert lines[-1] == "/d/y.png,-1,," + "," * (NUM_CLASSES - 1)  # unknown: no target
    back = Manifest.from_csv(tmp_path / "soft.csv")
    assert np.array_equal(back.paths, mixed.paths) and np.array_equal(back.labels, mixed.labels)
    assert np.array_equal(back.targets, mixed.targets)  # bit for bit: 2/3 as float32
    HARD.to_csv(tmp_path / "hard.csv")
    assert (tmp_path / "hard.csv").read_text().splitlines()[0] == "path,label,emotion"
    hard = Manifest.from_csv(tmp_path / "hard.csv")
    assert hard.targets is None and np.array_equal(hard.labels, HARD.labels)


def test_an_edited_csv_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "labeled.csv"
    SOFT.to_csv(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace("0.6666667", "x"), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=r"labeled.csv:2: 0.33333334,0,0,x,0,0,0 are not 7 numbers"):
        Manifest.from_csv(path)
    path.write_text("\n".join([lines[0], lines[1].replace("0.6666667", "0.2"), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=r"labeled.csv: 1 target rows are not distributions"):
        Manifest.from_csv(path)
    header = lines[0].replace(f",{PROB_COLUMNS[-1]}", "")
    path.write_text("\n".join([header, *(line.rsplit(",", 1)[0] for line in lines[1:])]) + "\n")
    with pytest.raises(DataError, match=r"has prob_surprise.* but not every one of"):
        Manifest.from_csv(path)


def test_split_protocol_and_saved_split_keep_targets(tmp_path):
    """Stratified by the hard labels; every split keeps its images' targets, on disk too."""
    n = 4 * NUM_CLASSES
    labels = np.arange(n) % NUM_CLASSES
    targets = np.full((n, NUM_CLASSES), 0.1 / (NUM_CLASSES - 1), np.float32)
    targets[np.arange(n), labels] = 0.9
    train = Manifest(np.array([f"/d/train_{i:02d}.png" for i in range(n)]), labels, targets)
    test = Manifest(np.array(["/d/test_0.png"]), np.array([HAPPY]))
    extra = Manifest(np.array(["/d/pool_0.png"]), np.array([UNKNOWN]))
    splits = make_splits(
        train, test, label_fraction=0.5, val_fraction=0.25, seed=3, extra_unlabeled=extra
    )
    by_path = dict(zip(train.paths.tolist(), targets.tolist(), strict=True))
    for part in (splits.labeled, splits.val, splits.unlabeled.subset(np.arange(n // 4))):
        assert part.targets.tolist() == [by_path[p] for p in part.paths.tolist()]
    assert not splits.unlabeled.targets[-1].any() and splits.test.targets is None
    splits.save(tmp_path)
    again = Splits.load(tmp_path)
    for name in ("labeled", "unlabeled", "val"):
        assert np.array_equal(getattr(again, name).targets, getattr(splits, name).targets)
    assert again.test.targets is None


def test_the_teacher_cache_key_sees_targets_and_survives_the_saved_split(tmp_path):
    """Soft targets train the teacher: other targets on the same files give another key,
    and a split read back from disk (a resume, a cache hit) gives the same one."""
    empty = HARD.subset(np.array([], dtype=np.int64))
    splits = Splits(labeled=SOFT, unlabeled=empty, val=empty, test=HARD.subset(np.array([0])))
    splits.save(tmp_path)
    assert split_fingerprint(Splits.load(tmp_path)) == split_fingerprint(splits)
    other = np.array([row(happiness=1), row(surprise=1), row(neutral=1)])
    hard = dataclasses.replace(splits, labeled=Manifest(SOFT.paths, SOFT.labels, other))
    assert split_fingerprint(hard)["labeled"] != split_fingerprint(splits)["labeled"]
    assert split_fingerprint(hard)["test"] == split_fingerprint(splits)["test"]
