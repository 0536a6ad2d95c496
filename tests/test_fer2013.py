"""FER2013 as distributed (one CSV of 48x48 faces): read by name, decoded once, trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_lightning.data.fer2013 import read_fer2013
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import DataError
from tests.helpers.cli import train
from tests.helpers.layouts import make_fer2013_csv

# FER2013 order: angry, disgust, fear, happy, sad, surprise, neutral
COUNTS = {"Training": [6, 3, 4, 9, 6, 5, 7], "PublicTest": [1] * 7, "PrivateTest": [2] * 7}


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fer2013_csv(tmp_path_factory.mktemp("fer2013") / "fer2013.csv", COUNTS)


def test_splits_by_usage_and_labels_by_name(fer_csv, tmp_path):
    manifests = read_fer2013(fer_csv.parent, cache_dir=str(tmp_path))
    assert set(manifests) == {"Training", "PublicTest", "PrivateTest"}
    counts = dict(zip(EMOTIONS, manifests["Training"].class_counts().tolist(), strict=True))
    assert counts == {"surprise": 5, "fear": 4, "disgust": 3, "happiness": 9, "sadness": 6,
                      "anger": 6, "neutral": 7}  # fmt: skip
    face = manifests["PrivateTest"].paths[0]
    assert face.endswith(".png") and Path(face).is_file() and str(tmp_path) in face
    first = Path(face).stat().st_mtime_ns
    again = read_fer2013(fer_csv, cache_dir=str(tmp_path))  # the CSV itself, decoded already
    assert again["PrivateTest"].paths.tolist() == manifests["PrivateTest"].paths.tolist()
    assert Path(face).stat().st_mtime_ns == first


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ('7,"1 2 3",Training', r"fer2013.csv:3: emotion '7' is not FER2013's 0..6"),
        ('0,"1 2 3",Training', r"fer2013.csv:3: 3 pixel values; a FER2013 face is 48x48"),
        ('0,"' + " ".join(["0"] * 2304) + '",Validation', "fer2013.csv:3: Usage 'Validation'"),
    ],
)
def test_a_bad_row_names_the_file_and_line(tmp_path, fer_csv, row, match):
    bad = tmp_path / "fer2013.csv"
    lines = fer_csv.read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1], row, *lines[2:4]]) + "\n")
    with pytest.raises(DataError, match=match):
        read_fer2013(bad, cache_dir=str(tmp_path / "cache"))
    assert not any((tmp_path / "cache").glob("fer2013-png-*"))  # nothing half-decoded kept
    with pytest.raises(DataError, match="point data.root at fer2013.csv"):
        read_fer2013(tmp_path / "nowhere")


def test_fer_train_runs_on_the_csv(fer_csv, tmp_path):
    result = train(tmp_path, "data=fer2013", f"data.root={fer_csv}", "pseudo_label=none")
    assert "Final model (round 0) on the test split" in result.stdout
    assert (tmp_path / "run" / "round_0" / "DONE").is_file()
    test_split = (tmp_path / "run" / "splits" / "test.csv").read_text()
    assert test_split.count("PrivateTest") == 14  # 2 per emotion: the default test split
    val_split = (tmp_path / "run" / "splits" / "val.csv").read_text()
    assert val_split.count("PublicTest") == 7 and "Training" not in val_split  # validation given
