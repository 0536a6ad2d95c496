"""CK+ and JAFFE: read by name, cross-validated by subject, folds reported like seeds."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.sources import read_ckplus, read_jaffe
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import ConfigError, DataError
from tests.helpers.cli import fer
from tests.helpers.layouts import make_ckplus48, make_ckplus_sequences, make_jaffe

CKPLUS_SUBJECT = r"^(S\d+)_"
JAFFE_SUBJECT = r"^([A-Z]{2})\."


@pytest.fixture(scope="module")
def ckplus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ckplus48(tmp_path_factory.mktemp("ck") / "CK+48", subjects=6, per_subject=2)


def test_ckplus_maps_folders_by_name_and_counts_what_it_drops(ckplus, caplog):
    with pytest.raises(DataError, match=r"'contempt' is not one of the 7 basic emotions.*"
                       r"data.source.drop_classes=\[contempt\]"):  # fmt: skip
        read_ckplus(ckplus)
    with caplog.at_level("INFO", logger="fer_lightning.data"):
        (manifest,) = read_ckplus(ckplus, drop_classes=["contempt"]).values()
    assert "left out (data.source.drop_classes): 12 contempt" in caplog.text
    counts = dict(zip(EMOTIONS, manifest.class_counts().tolist(), strict=True))
    assert counts == dict.fromkeys(EMOTIONS, 12) | {"neutral": 0}  # CK+48 has no neutral


def test_ckplus_original_layout_labels_each_sequences_last_frames(tmp_path, caplog):
    sequences = {"S005/001": 3, "S005/002": 2, "S010/001": 7, "S010/002": None}
    root = make_ckplus_sequences(tmp_path / "CK+", sequences, frames=5)
    with caplog.at_level("INFO", logger="fer_lightning.data"):
        (manifest,) = read_ckplus(root, ["contempt"], neutral_frames=1).values()
    by_name = {
        Path(p).name: EMOTIONS[y] for p, y in zip(manifest.paths, manifest.labels, strict=True)
    }
    # disgust (3) and surprise (7): the last 3 frames; every labeled sequence: frame 1 neutral
    assert by_name == {
        **{f"S005_001_{i:08d}.png": "disgust" for i in (3, 4, 5)},
        **{f"S010_001_{i:08d}.png": "surprise" for i in (3, 4, 5)},
        **{f"S{s}_00{t}_00000001.png": "neutral" for s, t in (("005", 1), ("005", 2), ("010", 1))},
    }
    assert "left out (data.source.drop_classes): 3 contempt" in caplog.text  # S005/002's peak
    assert re.match(CKPLUS_SUBJECT, "S010_001_00000003.png")  # the same subject pattern
    (root / "Emotion/S005/001/S005_001_00000005_emotion.txt").write_text("   9.0000000e+00\n")
    with pytest.raises(DataError, match=r"S005_001_00000005_emotion.txt:1: '9.0000000e\+00' is "
                       r"not a CK\+ emotion code 0..7"):  # fmt: skip
        read_ckplus(root, ["contempt"])


def test_jaffe_labels_come_from_the_file_name(tmp_path):
    root = make_jaffe(tmp_path / "jaffe")
    (manifest,) = read_jaffe(root).values()
    by_name = {
        Path(p).name: EMOTIONS[y] for p, y in zip(manifest.paths, manifest.labels, strict=True)
    }
    assert by_name["KA.AN1.1.tiff"] == "anger" and by_name["KL.SU1.14.tiff"] == "surprise"
    (root / "odd.tiff").write_bytes((root / "KA.AN1.1.tiff").read_bytes())
    with pytest.raises(DataError, match=r"odd.tiff: not a JAFFE name"):
        read_jaffe(root)


def _module(root: Path, fold: int, **options) -> FERDataModule:
    source = lambda r: read_ckplus(r, drop_classes=["contempt"])  # noqa: E731
    return FERDataModule(source, str(root), folds=3, fold=fold, subject_pattern=CKPLUS_SUBJECT,
                         num_workers=0, **options)  # fmt: skip


def _subjects(paths) -> set[str]:
    return {re.match(CKPLUS_SUBJECT, Path(p).name).group(1) for p in paths}


def test_folds_never_share_a_subject_and_cover_every_face(ckplus):
    tested: list[set[str]] = []
    for fold in range(3):
        splits = _module(ckplus, fold).build_splits()
        train_side = {*splits.labeled.paths, *splits.val.paths, *splits.unlabeled.paths}
        assert _subjects(train_side).isdisjoint(_subjects(splits.test.paths))
        tested.append(_subjects(splits.test.paths))
        assert len(train_side) + len(splits.test) == 6 * 6 * 2
    assert [len(t) for t in tested] == [2, 2, 2] and set().union(*tested) == _subjects(
        p for p in map(str, ckplus.rglob("*.png")) if "contempt" not in p
    )
    with pytest.raises(DataError, match=r"data.subject_pattern='\^\(X\\\\d\+\)' does not match"):
        FERDataModule(lambda r: read_ckplus(r, ["contempt"]), str(ckplus), folds=3,
                      subject_pattern=r"^(X\d+)", num_workers=0).build_splits()  # fmt: skip
    with pytest.raises(ConfigError, match=r"data.fold must be one of 0..2"):
        _module(ckplus, 3)


def test_a_study_over_folds_is_reported_like_seeds(tmp_path):
    root = make_jaffe(tmp_path / "jaffe")
    sweep = tmp_path / "sweep"
    fer("train", ["-m", "data=jaffe", f"data.root={root}", "data.folds=2", "data.fold=0,1",
                  "data.image_size=32", "data.batch_size=8", "data.num_workers=0",
                  "trainer.max_epochs=1", "trainer.accelerator=cpu", "pseudo_label.rounds=0",
                  "model.backbone=test_efficientnet", "model.weights=null",
                  "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}",
                  f"paths.log_dir={tmp_path / 'logs'}",
                  f"paths.data_dir={tmp_path / 'data'}"])  # fmt: skip
    report = fer("report", [str(sweep)])
    with open(sweep / "groups.csv", newline="") as f:
        (group,) = csv.DictReader(f)
    assert group["n"] == "2"  # the two folds: one configuration, mean +- std over them
    with open(sweep / "report.csv", newline="") as f:
        assert sorted(row["fold"] for row in csv.DictReader(f)) == ["0", "1"]
    assert "| 2 |" in report.stdout
