"""The split protocol on a known imbalanced manifest: exact counts, coverage, seeds, round trip."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fer_lightning.data.manifest import UNKNOWN, Manifest
from fer_lightning.data.splits import Splits, budget_size, drop_copies, make_splits
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import DataError

CONF = Path(__file__).resolve().parents[1] / "conf"

# Imbalanced like RAF-DB, with a single-image class (anger) and an absent one (neutral).
COUNTS = (40, 5, 12, 100, 30, 1, 0)
VAL = [4, 1, 1, 10, 3, 0, 0]  # round-half-up 10 %, >= 1 from classes of >= 2, never all
REST = [36, 4, 11, 90, 27, 1, 0]


def _manifest(counts: tuple[int, ...], prefix: str = "train") -> Manifest:
    labels = np.repeat(np.arange(len(counts)), counts)
    order = np.random.default_rng(123).permutation(len(labels))  # not sorted by path
    paths = np.array([f"/data/{prefix}/{i:04d}.jpg" for i in range(len(labels))])
    return Manifest(paths[order], labels[order])


TRAIN = _manifest(COUNTS)
TEST = _manifest((3, 1, 1, 9, 4, 2, 5), prefix="test")


def _pairs(m: Manifest) -> set[tuple[str, int]]:
    return set(zip(m.paths.tolist(), m.labels.tolist(), strict=True))


def test_a_budget_per_emotion_gives_exactly_its_counts() -> None:
    """Ada-CM's budgets name each emotion (fear below the rest): conf/budget/adacm_*.yaml."""
    budget = {e: 3 for e in EMOTIONS} | {"fear": 2, "happiness": 20}
    splits = make_splits(TRAIN, TEST, labels_per_class=budget, val_fraction=0.1)
    assert splits.labeled.class_counts().tolist() == [3, 2, 3, 20, 3, 1, 0]  # anger has 1
    assert splits.val.class_counts().tolist() == VAL  # the budget does not move validation
    # budgets cut each emotion's one shuffled order: between the uniform budgets 2 and 20
    low, high = (set(make_splits(TRAIN, TEST, labels_per_class=n).labeled.paths) for n in (2, 20))
    assert low <= set(splits.labeled.paths) <= high


@pytest.mark.parametrize(
    "budget",
    [
        {"labels_per_class": 3},
        {"label_fraction": 0.25},
        {"labels_per_class": {"fear": 2, "happiness": 20}},
    ],
)
def test_budget_size_counts_what_the_split_labels(budget: dict) -> None:
    """A study's ceiling sizes its schedule by the budget's count, from its own labels alone."""
    if isinstance(budget.get("labels_per_class"), dict):
        budget = {"labels_per_class": {e: 3 for e in EMOTIONS} | budget["labels_per_class"]}
    labeled = len(make_splits(TRAIN, TEST, **budget).labeled)
    everything = make_splits(TRAIN, TEST).labeled.class_counts()  # the ceiling's labels
    options = {"labels_per_class": None, "label_fraction": None} | budget
    assert budget_size(everything, **options) == labeled < everything.sum()


def test_the_ada_cm_presets_hold_their_totals() -> None:
    from omegaconf import OmegaConf

    for total in (100, 400, 1000, 2000, 4000):
        node = OmegaConf.load(CONF / "budget" / f"adacm_{total}.yaml")
        budget = OmegaConf.to_container(node.labels_per_class)
        assert sum(budget.values()) == total and list(budget) == list(EMOTIONS)
        assert budget["fear"] == min(budget.values()) < max(budget.values())


def test_labels_per_class_exact_counts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fer_lightning.data"):
        splits = make_splits(TRAIN, TEST, labels_per_class=10, val_fraction=0.1)
    assert splits.val.class_counts().tolist() == VAL
    assert splits.labeled.class_counts().tolist() == [10, 4, 10, 10, 10, 1, 0]
    assert splits.unlabeled.class_counts().tolist() == [26, 0, 1, 80, 17, 0, 0]
    assert _pairs(splits.test) == _pairs(TEST)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    assert warned[0].startswith("fear has only 4 training images")
    assert warned[1].startswith("anger has only 1 training images")


def test_label_fraction_exact_counts() -> None:
    splits = make_splits(TRAIN, TEST, label_fraction=0.25, val_fraction=0.1)
    assert splits.val.class_counts().tolist() == VAL
    # round half up of 25 % of REST, at least one per present class
    assert splits.labeled.class_counts().tolist() == [9, 1, 3, 23, 7, 1, 0]
    assert splits.unlabeled.class_counts().tolist() == [27, 3, 8, 67, 20, 0, 0]


def test_no_budget_labels_everything_and_val_fraction_edges() -> None:
    splits = make_splits(TRAIN, TEST)
    assert splits.labeled.class_counts().tolist() == REST
    assert len(splits.unlabeled) == 0
    assert len(make_splits(TRAIN, TEST, val_fraction=0.0).val) == 0
    half = make_splits(_manifest((2, 3, 1)), TEST, val_fraction=0.5)
    assert half.val.class_counts()[:3].tolist() == [1, 2, 0]  # 1.5 -> 2, keeps 1 to train
    assert half.labeled.class_counts()[:3].tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "options",
    [{"labels_per_class": 7}, {"label_fraction": 0.3}, {}],
)
def test_disjoint_and_covering_with_labels_kept(options: dict) -> None:
    splits = make_splits(TRAIN, TEST, val_fraction=0.2, seed=5, **options)
    parts = [_pairs(splits.labeled), _pairs(splits.unlabeled), _pairs(splits.val)]
    assert sum(len(p) for p in parts) == len(TRAIN)
    assert parts[0] | parts[1] | parts[2] == _pairs(TRAIN)
    for m in (splits.labeled, splits.unlabeled, splits.val, splits.test):
        assert m.paths.tolist() == sorted(m.paths.tolist())


def test_seeded_deterministic_order_free_and_nested() -> None:
    a = make_splits(TRAIN, TEST, labels_per_class=10, seed=1)
    shuffled = TRAIN.subset(np.random.default_rng(9).permutation(len(TRAIN)))
    b = make_splits(shuffled, TEST, labels_per_class=10, seed=1)
    for name in ("labeled", "unlabeled", "val", "test"):
        assert np.array_equal(getattr(a, name).paths, getattr(b, name).paths)
        assert np.array_equal(getattr(a, name).labels, getattr(b, name).labels)
    other = make_splits(TRAIN, TEST, labels_per_class=10, seed=2)
    assert _pairs(other.labeled) != _pairs(a.labeled)
    assert _pairs(other.val) != _pairs(a.val)
    # one seed: the same validation images for any budget, smaller budgets inside larger ones
    small = make_splits(TRAIN, TEST, labels_per_class=3, seed=1)
    assert _pairs(small.val) == _pairs(a.val)
    assert _pairs(small.labeled) < _pairs(a.labeled)


def test_extra_unlabeled_is_appended_to_the_pool() -> None:
    extra = Manifest(np.array(["/faces/b.jpg", "/faces/a.jpg"]), np.full(2, UNKNOWN))
    splits = make_splits(TRAIN, TEST, labels_per_class=10, extra_unlabeled=extra)
    assert len(splits.unlabeled) == 124 + 2
    assert splits.unlabeled.paths[-2:].tolist() == ["/faces/b.jpg", "/faces/a.jpg"]
    assert splits.unlabeled.labels[-2:].tolist() == [UNKNOWN, UNKNOWN]
    assert (splits.unlabeled.labels[:-2] >= 0).all()  # the pool keeps true labels for audit


def test_save_load_round_trip_and_missing_file(tmp_path: Path) -> None:
    extra = Manifest(np.array(["/faces/x.jpg"]), np.array([UNKNOWN]))
    splits = make_splits(TRAIN, TEST, label_fraction=0.5, extra_unlabeled=extra)
    splits.save(tmp_path / "splits")
    loaded = Splits.load(tmp_path / "splits")
    for name in ("labeled", "unlabeled", "val", "test"):
        assert np.array_equal(getattr(loaded, name).paths, getattr(splits, name).paths)
        assert np.array_equal(getattr(loaded, name).labels, getattr(splits, name).labels)
    assert loaded.summary() == splits.summary()
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == [
        "labeled.csv",
        "test.csv",
        "unlabeled.csv",
        "val.csv",
    ]
    (tmp_path / "splits" / "val.csv").unlink()
    (tmp_path / "splits" / "test.csv").unlink()
    with pytest.raises(DataError, match=r"splits lacks val\.csv, test\.csv"):
        Splits.load(tmp_path / "splits")


def test_summary_table() -> None:
    lines = make_splits(TRAIN, TEST, labels_per_class=10).summary().splitlines()
    assert lines[0].split() == ["emotion", "labeled", "unlabeled", "val", "test"]
    assert lines[1].split() == ["surprise", "10", "26", "4", "3"]
    assert lines[7].split() == ["neutral", "0", "!", "0", "!", "0", "!", "5"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"labels_per_class": 5, "label_fraction": 0.1}, "data.labels_per_class or data.label"),
        (
            {"labels_per_class": 0},
            r"labels_per_class must be an integer >= 1 or a .*, got 0",
        ),
        ({"labels_per_class": 2.5}, r"data.labels_per_class must be an integer"),
        ({"labels_per_class": {"fear": 2}}, r"no budget for surprise, disgust, happiness, "),
        (
            {"labels_per_class": {**dict.fromkeys(EMOTIONS, 3), "contempt": 3}},
            r"unknown emotion\(s\) \['contempt'\]",
        ),  # fmt: skip
        ({"labels_per_class": {**dict.fromkeys(EMOTIONS, 3), "fear": 0}}, r"\{'fear': 0\}"),
        ({"label_fraction": 0.0}, r"data.label_fraction must be in \(0, 1\], got 0.0"),
        ({"label_fraction": 1.5}, r"data.label_fraction must be in \(0, 1\]"),
        ({"val_fraction": 1.0}, r"data.val_fraction must be in \[0, 1\), got 1.0"),
        ({"val_fraction": -0.1}, r"data.val_fraction must be in \[0, 1\)"),
    ],
)
def test_bad_options_name_the_config_key(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_splits(TRAIN, TEST, **options)


def test_train_must_be_labeled_and_non_empty() -> None:
    unlabeled = TRAIN.concat(Manifest(np.array(["/x.jpg"]), np.array([UNKNOWN])))
    with pytest.raises(DataError, match="1 of 189 training images have no label"):
        make_splits(unlabeled, TEST)
    with pytest.raises(DataError, match="training split is empty"):
        make_splits(TRAIN.subset(np.array([], dtype=np.int64)), TEST)


def test_an_image_in_two_splits_is_refused() -> None:
    """A test image also listed in train, or a pool folder holding the data set's images."""
    test = Manifest(np.array([TRAIN.paths[0], "/data/test_1.jpg"]), np.array([0, 1]))
    with pytest.raises(DataError, match=r"1 images are in two splits at once.*/data/train/"):
        make_splits(TRAIN, test, seed=0)
    extra = Manifest(TRAIN.paths[:3], np.full(3, UNKNOWN))
    with pytest.raises(DataError, match=r"data.unlabeled_dir holds 3 of the data set's own"):
        make_splits(TRAIN, TEST, seed=0, extra_unlabeled=extra)


def test_on_duplicate_drop_keeps_one_copy_a_test_one_first(tmp_path, caplog):
    def write(name: str, content: bytes) -> str:
        (tmp_path / name).write_bytes(content)
        return str(tmp_path / name)

    train = Manifest(
        np.array([write("t1.png", b"A"), write("t2.png", b"A"), write("t3.png", b"B"),
                  write("t4.png", b"C"), write("t5.png", b"D"), write("t6.png", b"D")]),
        np.array([0, 0, 1, 2, 3, 4]),
    )  # fmt: skip
    test = Manifest(np.array([write("s1.png", b"B"), write("s2.png", b"E")]), np.array([1, 5]))
    extra = Manifest(np.array([write("u1.png", b"C"), write("u2.png", b"F")]), np.full(2, UNKNOWN))
    with caplog.at_level(logging.WARNING):
        kept_train, kept_test, kept_extra = drop_copies(train, test, extra)
    names = [[Path(p).name for p in m.paths] for m in (kept_train, kept_test, kept_extra)]
    # A twice in train: the first stays; B in test and train: test's stays; C in train and
    # the pool: train's stays; D with two labels and no test copy: neither trains
    assert names == [["t1.png", "t4.png"], ["s1.png", "s2.png"], ["u2.png"]]
    assert "5 byte-identical copies left out (test 0, train 4, pool 1)" in caplog.text
    assert "1 groups of copies disagreed on the label" in caplog.text
    make_splits(kept_train, kept_test, val_fraction=0.0)  # what is left passes the copy check
