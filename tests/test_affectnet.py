"""AffectNet: expressions by name, faces cropped by their boxes once, contempt and the cap."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_lightning.data.affectnet import read_affectnet
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import ConfigError, DataError
from tests.helpers.cli import train

HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
          "facial_landmarks", "expression", "valence", "arousal"]  # fmt: skip
HEIGHT, WIDTH = 40, 48  # every image; the boxes are smaller
BOX = (5, 7, 24, 20)  # x, y, width, height: a crop of 24x20 px
# expressions per file (0 neutral .. 6 anger, 7 contempt, 8 none, 9 uncertain, 10 no-face)
TRAINING = [e for e in range(7) for _ in range(3)] + [1] * 5 + [7, 8, 9, 10, 10]
VALIDATION = [*range(8), 8]


def colour(i: int) -> tuple[int, int, int]:
    """The BGR value the box of image ``i`` is painted with (one per image)."""
    return (i * 7 % 256, 255 - i * 5 % 256, 40 + i % 200)


def write_affectnet(root: Path, files: dict[str, list[int]]) -> dict[str, tuple[int, int, int]]:
    """Label files and images (noise, the box painted a colour); {image: its box colour}."""
    colours = {}
    number = 0
    for label_file, expressions in files.items():
        with open(root / label_file, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            for expression in expressions:
                name = f"{number % 3 + 1}/face_{number:04d}.png"
                rng = np.random.default_rng(number)
                image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
                x, y, w, h = BOX
                image[y : y + h, x : x + w] = colour(number)
                path = root / "Manually_Annotated_Images" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), image)
                colours[name] = colour(number)
                writer.writerow([name, *BOX, "1.0;2.0", expression, "0.1", "-0.2"])
                number += 1
    return colours


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("affectnet")
    return root, write_affectnet(root, {"training.csv": TRAINING, "validation.csv": VALIDATION})


def _counts(manifest) -> dict[str, int]:
    return dict(zip(EMOTIONS, manifest.class_counts().tolist(), strict=True))


def test_expressions_by_name_and_what_is_left_out_is_counted(affectnet, tmp_path, caplog):
    root, _ = affectnet
    with caplog.at_level("INFO", logger="fer_lightning.data"):
        manifests = read_affectnet(root, drop_classes=["contempt"], cache_dir=str(tmp_path))
    assert set(manifests) == {"train", "test"}
    assert _counts(manifests["train"]) == dict.fromkeys(EMOTIONS, 3) | {"happiness": 8}
    assert _counts(manifests["test"]) == dict.fromkeys(EMOTIONS, 1)
    by_name = {Path(p).name: EMOTIONS[y] for m in manifests.values()
               for p, y in zip(m.paths, m.labels, strict=True)}  # fmt: skip
    # AffectNet's order: 0 neutral, 1 happiness, 2 sadness, 3 surprise, 4 fear, 5 disgust, 6 anger
    assert [by_name[f"face_{i:04d}.jpg"] for i in range(0, 21, 3)] == [
        "neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"
    ]  # fmt: skip
    assert "face_0026.jpg" not in by_name  # contempt
    log = caplog.text
    assert f"{root / 'training.csv'}: left out (no emotion): 2 no-face, 1 none, 1 uncertain" in log
    assert f"{root / 'validation.csv'}: left out (no emotion): 1 none" in log
    assert "training.csv: left out (data.source.drop_classes): 1 contempt" in log
    assert "validation.csv: left out (data.source.drop_classes): 1 contempt" in log


def test_faces_are_cropped_by_their_box_once(affectnet, tmp_path):
    root, colours = affectnet
    manifests = read_affectnet(
        root, drop_classes=["contempt"], crop_format="png", cache_dir=str(tmp_path)
    )
    (cache,) = tmp_path.glob("affectnet-crops-*")
    for path in manifests["train"].paths.tolist() + manifests["test"].paths.tolist():
        assert path.startswith(str(cache))
        crop = cv2.imread(path)
        name = "/".join(Path(path).with_suffix(".png").parts[-2:])
        assert crop.shape == (BOX[3], BOX[2], 3)
        assert (crop == colours[name]).all()  # exactly the painted box, nothing around it
    first = Path(path).stat().st_mtime_ns
    again = read_affectnet(root, drop_classes=["contempt"], crop_format="png",
                           cache_dir=str(tmp_path))  # fmt: skip
    assert again["test"].paths.tolist() == manifests["test"].paths.tolist()
    assert Path(path).stat().st_mtime_ns == first  # not cropped again
    # the default: JPEG at quality 95, a second cache; a flat box survives within a step or two
    jpeg = read_affectnet(root, drop_classes=["contempt"], cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("affectnet-crops-*"))) == 2
    crop = cv2.imread(jpeg["test"].paths[0]).astype(int)
    expected = colours["/".join(Path(jpeg["test"].paths[0]).with_suffix(".png").parts[-2:])]
    assert crop.shape == (BOX[3], BOX[2], 3) and np.abs(crop - expected).max() <= 3


def test_contempt_is_refused_until_dropped_by_name(affectnet, tmp_path):
    root, _ = affectnet
    line = 2 + TRAINING.index(7)
    with pytest.raises(DataError, match=rf"training.csv:{line}: 'contempt' is not one of the 7 "
                       r"basic emotions.*data.source.drop_classes=\[contempt\]"):  # fmt: skip
        read_affectnet(root, cache_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())  # refused before anything is cropped


def test_max_per_class_caps_the_training_split_by_a_seeded_choice(affectnet, tmp_path, caplog):
    root, _ = affectnet

    def read(cap: int, seed: int):
        return read_affectnet(root, drop_classes=["contempt"], max_per_class=cap, seed=seed,
                              cache_dir=str(tmp_path))  # fmt: skip

    with caplog.at_level("INFO", logger="fer_lightning.data"):
        capped = read(2, seed=0)
    assert _counts(capped["train"]) == dict.fromkeys(EMOTIONS, 2)
    assert _counts(capped["test"]) == dict.fromkeys(EMOTIONS, 1)  # the test split is whole
    assert (
        "left out (data.source.max_per_class=2): 1 anger, 1 disgust, 1 fear, 6 happiness, "
        "1 neutral, 1 sadness, 1 surprise" in caplog.text
    )
    assert read(2, seed=0)["train"].paths.tolist() == capped["train"].paths.tolist()
    choices = {tuple(read(2, seed=s)["train"].paths.tolist()) for s in range(4)}
    assert len(choices) > 1  # the seed decides
    assert read(8, seed=0)["train"].paths.tolist() == read(100, seed=1)["train"].paths.tolist()
    with pytest.raises(ConfigError, match=r"data.source.max_per_class must be an integer >= 1"):
        read(0, seed=0)


def _copy(affectnet, tmp_path: Path, file: str, number: int, text: str) -> Path:
    """The fixture's data set with line ``number`` of ``file`` replaced by ``text``."""
    root, _ = affectnet
    copy = tmp_path / "affectnet"
    (copy / "Manually_Annotated_Images").symlink_to(root / "Manually_Annotated_Images")
    for name in ("training.csv", "validation.csv"):
        lines = (root / name).read_text().splitlines()
        if name == file:
            lines[number - 1] = text
        (copy / name).write_text("\n".join(lines) + "\n")
    return copy


@pytest.fixture
def copy_dir(tmp_path: Path) -> Path:
    (tmp_path / "affectnet").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("file", "number", "text", "match"),
    [
        ("training.csv", 3, "2/face_0001.png,30,7,24,20,,1,0,0",
         r"training.csv:3 \(2/face_0001.png\): face box x=30 y=7 width=24 height=20 is outside "
         r"the 48x40 image.*Correct face_x,face_y,face_width,face_height"),
        ("training.csv", 3, "2/face_0001.png,-1,7,24,20,,1,0,0", r"training.csv:3 .* is outside"),
        ("training.csv", 3, "2/face_0001.png,5,7,0,20,,1,0,0",
         r"training.csv:3: face box x=5 y=7 width=0 height=20 is empty"),
        ("training.csv", 3, "2/face_0001.png,5,7,a,20,,1,0,0",
         r"training.csv:3: face box .* must be four integers"),
        ("training.csv", 3, "2/face_0001.png,5,7,24,20,,11,0,0",
         r"training.csv:3: expression '11' is not AffectNet's 0..10"),
        ("training.csv", 3, "1/gone.png,5,7,24,20,,1,0,0",
         r"1 of 35 images listed are missing from .*training.csv:3 \(1/gone.png\)"),
        ("training.csv", 3, "../face_0001.png,5,7,24,20,,1,0,0",
         r"training.csv:3: subDirectory_filePath '../face_0001.png' must be a path inside"),
        ("training.csv", 3, "1/face_0000.png,5,7,24,20,,0,0,0",
         r"training.csv:3 repeats .*training.csv:2 \(1/face_0000.png\)"),
        ("validation.csv", 2, "1/face_0000.png,5,7,24,20,,3,0,0",
         r"validation.csv:2 gives another expression than .*training.csv:2 \(1/face_0000.png\)"),
        ("training.csv", 1, "subDirectory_filePath,face_x,face_y,expression",
         r"training.csv:1: the header lacks face_height, face_width"),
    ],
)  # fmt: skip
def test_a_bad_line_names_the_file_and_line(affectnet, copy_dir, file, number, text, match):
    copy = _copy(affectnet, copy_dir, file, number, text)
    with pytest.raises(DataError, match=match):
        read_affectnet(copy, drop_classes=["contempt"], cache_dir=str(copy_dir / "cache"))
    cache = copy_dir / "cache"
    assert not cache.exists() or not list(cache.iterdir())  # nothing half-cropped kept


def test_label_files_in_their_folder_and_another_image_folder(affectnet, tmp_path):
    root, _ = affectnet
    lists = tmp_path / "Manually_Annotated_file_lists"
    lists.mkdir()
    for name in ("training.csv", "validation.csv"):
        (lists / name).write_bytes((root / name).read_bytes())
    with pytest.raises(DataError, match=r"image folder .* does not exist; set data.source.image"):
        read_affectnet(tmp_path, drop_classes=["contempt"])
    (tmp_path / "faces").symlink_to(root / "Manually_Annotated_Images")
    manifests = read_affectnet(
        tmp_path, image_dir="faces", drop_classes=["contempt"], cache_dir=str(tmp_path / "c")
    )
    assert len(manifests["train"]) == 26 and len(manifests["test"]) == 7
    with pytest.raises(DataError, match=r"training.csv and validation.csv not found"):
        read_affectnet(root / "Manually_Annotated_Images", image_dir=".")
    for i, name in enumerate(("training.csv", "validation.csv")):
        (lists / name).write_text(",".join(HEADER) + f"\n1/face_{i:04d}.png,5,7,24,20,,8,0,0\n")
    with pytest.raises(DataError, match=r"validation.csv list no face with an emotion"):
        read_affectnet(tmp_path, image_dir="faces", cache_dir=str(tmp_path / "c2"))


def test_fer_train_runs_on_affectnet(affectnet, tmp_path):
    root, _ = affectnet
    result = train(
        tmp_path, "data=affectnet", f"data.root={root}", "data.source.drop_classes=[contempt]",
        "data.source.max_per_class=3", "pseudo_label=none",
    )  # fmt: skip
    assert "Final model (round 0) on the test split" in result.stdout
    run = tmp_path / "run"
    assert (run / "round_0" / "DONE").is_file()
    test_split = (run / "splits" / "test.csv").read_text().splitlines()
    assert len(test_split) == 1 + 7 and all("/test/" in line for line in test_split[1:])
    train_rows = (run / "splits" / "labeled.csv").read_text().splitlines()[1:]
    val_rows = (run / "splits" / "val.csv").read_text().splitlines()[1:]
    assert len(train_rows) + len(val_rows) == 21 and val_rows  # 3 per emotion, val carved
