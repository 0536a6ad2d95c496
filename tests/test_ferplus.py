"""FERPlus: FER2013's faces (the same decoded PNGs) labeled by FERPlus's ten votes: their
majority, or (soft) their distribution, which must reach the training batches and the loss."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.fer2013 import read_fer2013
from fer_lightning.data.ferplus import VOTE_COLUMNS, largest, majority, read_ferplus, soft_target
from fer_lightning.data.manifest import Manifest
from fer_lightning.emotions import EMOTIONS, PROB_COLUMNS
from fer_lightning.errors import ConfigError, DataError
from tests.helpers.cli import train
from tests.helpers.layouts import make_fer2013_csv

HEADER = ["Usage", "Image name", *VOTE_COLUMNS]
SEVEN = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear")


def votes(**counts: int) -> list[int]:
    """Ten vote counts by column name: votes(happiness=8, neutral=2)."""
    return [counts.get(c, 0) for c in VOTE_COLUMNS]


def clear(emotion: str) -> list[int]:
    """Eight votes for ``emotion``, two for another: a clear majority."""
    other = "happiness" if emotion == "neutral" else "neutral"
    return votes(**{emotion: 8, other: 2})


# FERPlus rows of the Training faces (fer2013.csv lines 2..15), in order; None: removed
TRAINING = [
    *(clear(e) for e in SEVEN),  # lines 2..8: one face of each emotion
    votes(neutral=5, happiness=1, surprise=1, sadness=1, anger=1, fear=1),  # 9: singles are noise
    votes(happiness=4, sadness=4, anger=2),  # 10: a tie -> no majority
    votes(unknown=6, neutral=4),  # 11: unknown
    votes(NF=10),  # 12: not a face
    votes(contempt=7, neutral=3),  # 13: contempt
    None,  # 14: removed by FERPlus (empty Image name)
    votes(happiness=5, neutral=3, sadness=2),  # 15: exactly half is no majority
]
TESTS = [clear(e) for e in SEVEN]  # PublicTest (lines 16..22) and PrivateTest (23..29)


def write_ferplus(path: Path, fer_csv: Path, rows: list[list[int] | None]) -> Path:
    """``fer2013new.csv`` for ``fer_csv``'s faces: one vote row per face, Usage copied."""
    with open(fer_csv, newline="") as f:
        usages = [r["Usage"] for r in csv.DictReader(f)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i, (usage, row) in enumerate(zip(usages, rows, strict=True)):
            name = "" if row is None else f"fer{i:07d}.png"
            writer.writerow([usage, name, *(row or votes())])
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fer2013.csv (2 Training faces per FER2013 class, 1 per class in each test split) and
    fer2013new.csv beside it."""
    folder = tmp_path_factory.mktemp("ferplus")
    fer_csv = make_fer2013_csv(
        folder / "fer2013.csv", {"Training": [2] * 7, "PublicTest": [1] * 7, "PrivateTest": [1] * 7}
    )
    write_ferplus(folder / "fer2013new.csv", fer_csv, [*TRAINING, *TESTS, *TESTS])
    return folder


def _counts(manifest) -> dict[str, int]:
    return dict(zip(EMOTIONS, manifest.class_counts().tolist(), strict=True))


def test_majority_drops_single_votes_and_needs_more_than_half():
    assert majority(votes(neutral=5, happiness=1, surprise=1, sadness=1, anger=1, fear=1)) == (
        "neutral"
    )  # 5 of 10 is no majority, but 5 of 5 counted votes is
    assert majority(votes(happiness=4, sadness=4, anger=2)) is None  # a tie
    assert majority(votes(surprise=5, fear=5)) is None
    assert majority(votes(happiness=5, neutral=3, sadness=2)) is None  # exactly half
    assert majority(votes(happiness=6, neutral=4)) == "happiness"
    assert majority(votes(NF=10)) == "NF" and majority(votes()) is None
    assert majority(votes(**dict.fromkeys(VOTE_COLUMNS, 1))) is None  # all noise


def test_labels_are_the_votes_majority_on_fer2013s_decoded_faces(root, tmp_path, caplog):
    with caplog.at_level("INFO", logger="fer_lightning.data"):
        manifests = read_ferplus(root, drop_classes=["contempt"], cache_dir=str(tmp_path))
    assert set(manifests) == {"Training", "PublicTest", "PrivateTest"}
    assert _counts(manifests["Training"]) == dict.fromkeys(EMOTIONS, 1) | {"neutral": 2}
    assert _counts(manifests["PrivateTest"]) == dict.fromkeys(EMOTIONS, 1)
    # FER2013 labels its line 2 anger (its first class); FERPlus's votes say neutral
    labels = {
        Path(p).stem: EMOTIONS[y]
        for p, y in zip(manifests["Training"].paths, manifests["Training"].labels, strict=True)
    }
    assert labels["000002"] == "neutral" and labels["000003"] == "happiness"
    assert labels["000008"] == "fear" and labels["000009"] == "neutral"
    assert not {"000010", "000011", "000012", "000013", "000014", "000015"} & set(labels)
    # the faces are the ones data=fer2013 decodes, in the same cache
    fer = read_fer2013(root / "fer2013.csv", cache_dir=str(tmp_path))
    assert set(manifests["Training"].paths) < set(fer["Training"].paths)
    assert set(manifests["PublicTest"].paths) == set(fer["PublicTest"].paths)
    assert len(list(tmp_path.glob("fer2013-png-*"))) == 1
    assert "left out (majority rule): 1 NF, 2 no majority, 1 removed by FERPlus, 1 unknown" in (
        caplog.text
    )
    assert "left out (data.source.drop_classes): 1 contempt" in caplog.text


def test_the_label_file_itself_and_a_separate_fer2013_csv(root, tmp_path):
    elsewhere = tmp_path / "faces" / "fer2013.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes((root / "fer2013.csv").read_bytes())
    labels = tmp_path / "labels" / "fer2013new.csv"
    labels.parent.mkdir()
    labels.write_bytes((root / "fer2013new.csv").read_bytes())
    with pytest.raises(DataError, match=r"fer2013.csv not found.*data.source.fer2013_csv=PATH"):
        read_ferplus(labels, drop_classes=["contempt"], cache_dir=str(tmp_path))
    manifests = read_ferplus(
        labels, drop_classes=["contempt"], fer2013_csv=str(elsewhere), cache_dir=str(tmp_path)
    )
    assert len(manifests["Training"]) == 8
    with pytest.raises(DataError, match=r"point data.root at the folder holding fer2013new.csv"):
        read_ferplus(tmp_path / "nowhere")


def test_contempt_is_refused_until_dropped_by_name(root, tmp_path):
    with pytest.raises(
        DataError,
        match=r"fer2013new.csv:13 \(fer0000011.png: majority contempt\): 'contempt' is not one "
        r"of the 7 basic emotions.*data.source.drop_classes=\[contempt\]",
    ):
        read_ferplus(root, cache_dir=str(tmp_path))


def test_an_unknown_label_mode_is_refused(root):
    with pytest.raises(ConfigError, match=r"must be one of majority, soft, got 'vote'"):
        read_ferplus(root, ferplus_label="vote")


def _edit(root: Path, tmp_path: Path, edit) -> Path:
    """A copy of the fixture's two files with fer2013new.csv's lines passed through ``edit``."""
    (tmp_path / "fer2013.csv").write_bytes((root / "fer2013.csv").read_bytes())
    lines = (root / "fer2013new.csv").read_text().splitlines()
    (tmp_path / "fer2013new.csv").write_text("\n".join(edit(lines)) + "\n")
    return tmp_path


def _set(number: int, text: str):
    return lambda lines: [text if i == number - 1 else line for i, line in enumerate(lines)]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set(3, "Training,fer0000001.png,8,2,0,0,0,0,x,0,0,0"),
         r"fer2013new.csv:3: votes 8,2,0,0,0,0,x,0,0,0 must be 10 non-negative integers"),
        (_set(3, "PublicTest,fer0000001.png,8,2,0,0,0,0,0,0,0,0"),
         r"fer2013new.csv:3: Usage 'PublicTest', but fer2013.csv:3 is 'Training'"),
        (_set(4, "Training,fer0000001.png,2,8,0,0,0,0,0,0,0,0"),
         r"fer2013new.csv:4 repeats line 3 \(fer0000001.png\).*keep one row of each"),
        (_set(4, "Training,fer0000001.png,8,2,0,0,0,0,0,0,0,0"),
         r"fer2013new.csv:4 labels it otherwise than line 3 \(fer0000001.png\)"),
        (lambda lines: lines[:-1],
         r"fer2013new.csv has 27 rows, .*fer2013.csv 28: .* use the fer2013.csv that"),
        (lambda lines: ["Usage,Image name,neutral,happy", *lines[1:]],
         r"fer2013new.csv:1: the header lacks NF, anger, contempt"),
    ],
)  # fmt: skip
def test_a_bad_row_names_the_file_and_line(root, tmp_path, edit, match):
    folder = _edit(root, tmp_path, edit)
    with pytest.raises(DataError, match=match):
        read_ferplus(folder, drop_classes=["contempt"], cache_dir=str(tmp_path / "cache"))


def test_fer_train_runs_on_ferplus(root, tmp_path):
    result = train(
        tmp_path, "data=ferplus", f"data.root={root}", "data.source.drop_classes=[contempt]",
        "pseudo_label=none",
    )  # fmt: skip
    assert "Final model (round 0) on the test split" in result.stdout
    run = tmp_path / "run"
    assert (run / "round_0" / "DONE").is_file()
    assert (run / "splits" / "test.csv").read_text().count("PrivateTest") == 7
    labeled = (run / "splits" / "labeled.csv").read_text()
    assert labeled.count("Training") == 8 and "000013.png" not in labeled  # contempt left out


# -- ferplus_label=soft: the vote distribution as the target --------------------------------


def shares(**votes: float) -> np.ndarray:
    """The target a face's kept emotion votes make: float32 shares in EMOTIONS order."""
    counts = np.array([votes.get(e, 0) for e in EMOTIONS], dtype=np.float64)
    return (counts / counts.sum()).astype(np.float32)


# FERPlus rows of the Training faces (fer2013.csv lines 2..15) for soft labels, in order,
# with the target (None: left out) and the hard label each must get
SOFT = [
    (votes(happiness=6, unknown=2, neutral=2), shares(happiness=3, neutral=1), "happiness"),
    # contempt ties sadness: the earlier column wins; contempt's and the singles' votes go
    (votes(sadness=3, contempt=3, anger=2, fear=1, NF=1), shares(sadness=3, anger=2), "sadness"),
    (votes(surprise=4, unknown=4, fear=2), shares(surprise=2, fear=1), "surprise"),  # beats unknown
    (votes(**dict.fromkeys(VOTE_COLUMNS, 1)), None, None),  # only single votes: left out
    (votes(unknown=5, disgust=3, anger=2), None, None),  # unknown: left out
    (votes(NF=4, fear=3, surprise=3), None, None),  # not a face: left out
    (votes(contempt=5, disgust=3, anger=2), None, None),  # contempt: dropped by name
    (None, None, None),  # removed by FERPlus
    (votes(anger=3, disgust=3, fear=3, neutral=1), shares(anger=1, disgust=1, fear=1), "anger"),
    (votes(fear=9, happiness=1), shares(fear=1), "fear"),
    (votes(happiness=5, neutral=3, sadness=2), shares(happiness=5, neutral=3, sadness=2),
     "happiness"),  # no majority, a soft target all the same
    (clear("neutral"), shares(neutral=8, happiness=2), "neutral"),
    (clear("disgust"), shares(disgust=8, neutral=2), "disgust"),
    # ties go to FERPlus's column order, not to EMOTIONS' (surprise and fear come first there)
    (votes(happiness=2, surprise=2), shares(happiness=1, surprise=1), "happiness"),
]  # fmt: skip
KEPT = {f"{line:06d}": (t, y) for line, (_, t, y) in enumerate(SOFT, start=2) if t is not None}


@pytest.fixture(scope="module")
def soft_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's layout with :data:`SOFT`'s votes for the Training faces."""
    folder = tmp_path_factory.mktemp("ferplus_soft")
    fer_csv = make_fer2013_csv(
        folder / "fer2013.csv", {"Training": [2] * 7, "PublicTest": [1] * 7, "PrivateTest": [1] * 7}
    )
    write_ferplus(folder / "fer2013new.csv", fer_csv, [*(r for r, _, _ in SOFT), *TESTS, *TESTS])
    return folder


def _by_face(manifest: Manifest) -> dict[str, tuple[np.ndarray, str]]:
    """{fer2013.csv line (the PNG's name): (target row, hard label)}."""
    assert manifest.targets is not None
    return {
        Path(p).stem: (t, EMOTIONS[y])
        for p, t, y in zip(manifest.paths, manifest.targets, manifest.labels, strict=True)
    }


def test_largest_category_and_soft_target_of_hand_written_votes():
    assert largest(votes(happiness=4, sadness=4, anger=2)) == "happiness"  # earlier column
    assert largest(votes(surprise=4, unknown=4)) == "surprise"
    assert largest(votes(contempt=3, unknown=3)) == "contempt"
    assert largest(votes(**dict.fromkeys(VOTE_COLUMNS, 1))) is None and largest(votes()) is None
    target = soft_target(votes(happiness=4, sadness=4, anger=1, contempt=1, unknown=2))
    assert np.array_equal(target, shares(happiness=1, sadness=1))  # 1/2 each, exactly
    target = soft_target(votes(neutral=5, fear=2, contempt=2, NF=1), drop_classes=["contempt"])
    assert np.array_equal(target, shares(neutral=5, fear=2)) and target.sum() == 1
    assert target[EMOTIONS.index("neutral")] == np.float32(5 / 7)


def test_soft_targets_are_the_kept_votes_shares(soft_root, tmp_path, caplog):
    with caplog.at_level("INFO", logger="fer_lightning.data"):
        manifests = read_ferplus(
            soft_root, ferplus_label="soft", drop_classes=["contempt"], cache_dir=str(tmp_path)
        )
    faces = _by_face(manifests["Training"])
    assert set(faces) == set(KEPT)
    for face, (target, label) in KEPT.items():
        assert np.array_equal(faces[face][0], target), face  # exact fractions, float32
        assert faces[face][1] == label, face
    for usage in ("PublicTest", "PrivateTest"):  # every split carries its targets
        held = manifests[usage].targets
        assert held is not None and np.allclose(held.max(1), 0.8) and np.allclose(held.sum(1), 1)
    assert "left out (soft rule): 1 NF, 1 only single votes, 1 removed by FERPlus, 1 unknown" in (
        caplog.text
    )
    assert "left out (data.source.drop_classes): 1 contempt" in caplog.text
    majority_mode = read_ferplus(soft_root, drop_classes=["contempt"], cache_dir=str(tmp_path))
    assert majority_mode["Training"].targets is None


def test_soft_contempt_as_largest_category_fails_until_dropped(soft_root, tmp_path):
    with pytest.raises(
        DataError,
        match=r"fer2013new.csv:8 \(fer0000006.png: most votes contempt\): 'contempt' is not "
        r"one of the 7 basic emotions.*data.source.drop_classes=\[contempt\]",
    ):
        read_ferplus(soft_root, ferplus_label="soft", cache_dir=str(tmp_path))


def _soft_dm(root: Path, tmp_path: Path, batch_size: int = 64) -> FERDataModule:
    """The data module conf/data/ferplus.yaml makes, with soft labels, over ``root``."""
    source = functools.partial(
        read_ferplus, ferplus_label="soft", drop_classes=["contempt"], cache_dir=str(tmp_path)
    )
    return FERDataModule(
        source=source, root=str(root), train_split="Training", test_split="PrivateTest",
        val_split="PublicTest", image_size=48, batch_size=batch_size, num_workers=0,
        on_duplicate="drop", splits_dir=str(tmp_path / "run" / "splits"),
    )  # fmt: skip


def test_soft_targets_survive_the_saved_split_and_reach_the_training_batch(soft_root, tmp_path):
    dm = _soft_dm(soft_root, tmp_path)
    dm.prepare_data()
    header = (tmp_path / "run" / "splits" / "labeled.csv").read_text().splitlines()[0]
    assert header == ",".join(["path", "label", "emotion", *PROB_COLUMNS])
    dm.setup("fit")  # reads the split back from disk, as a resumed run does
    labeled = dm.splits.labeled
    faces = _by_face(labeled)
    assert set(faces) == set(KEPT)
    for face, (target, label) in KEPT.items():
        assert np.array_equal(faces[face][0], target) and faces[face][1] == label, face
    resumed = _soft_dm(soft_root, tmp_path)
    resumed.setup("fit")
    assert np.array_equal(resumed.splits.labeled.targets, labeled.targets)
    assert np.array_equal(resumed.splits.labeled.paths, labeled.paths)
    # one batch holds the whole labeled split: its targets are the vote shares, not one-hot
    _, targets, weights = next(iter(dm.train_dataloader()))
    expected = sorted(map(tuple, np.stack([t for t, _ in KEPT.values()]).tolist()))
    assert sorted(map(tuple, targets.tolist())) == expected
    assert (targets.max(1).values < 1).any() and torch.all(weights == 1)
    # validation scores the hard label: one-hot rows of the labels
    _, val_targets, _ = next(iter(dm.val_dataloader()))
    assert torch.all(val_targets.max(1).values == 1)
    # the balanced sampler counts hard labels (a tie's label is not the target's first max)
    dm.balanced_sampler = True
    draw = dm._draw_weights(dm.train_dataset())
    counts = np.bincount(labeled.labels, minlength=len(EMOTIONS))
    assert np.allclose(draw.numpy(), 1.0 / counts[labeled.labels])


def test_fer_train_runs_on_ferplus_soft_labels(soft_root, tmp_path):
    result = train(
        tmp_path, "data=ferplus", f"data.root={soft_root}", "data.source.ferplus_label=soft",
        "data.source.drop_classes=[contempt]", "pseudo_label=none",
    )  # fmt: skip
    assert "Final model (round 0) on the test split" in result.stdout
    run = tmp_path / "run"
    assert (run / "round_0" / "DONE").is_file()
    labeled = Manifest.from_csv(run / "splits" / "labeled.csv")
    assert set(_by_face(labeled)) == set(KEPT)
    assert labeled.targets is not None and (labeled.targets.max(1) < 1).any()
