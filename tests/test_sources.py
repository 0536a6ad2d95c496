"""Source readers on tiny fake layouts: counts, name-based labels, and every bad-input message."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fer_lightning.data.manifest import UNKNOWN, Manifest
from fer_lightning.data.sources import (
    check_images,
    describe,
    read_class_folders,
    read_rafdb,
    read_rafdb_kaggle,
    read_unlabeled_folder,
)
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import DataError
from tests.helpers.layouts import (
    emotion_folders,
    make_class_folders,
    make_rafdb,
    make_rafdb_kaggle,
    make_unlabeled_folder,
    truncate,
    write_image,
)

TRAIN = (3, 1, 2, 5, 2, 1, 4)
TEST = (1, 1, 1, 2, 1, 1, 1)


def _label_file(root: Path) -> Path:
    return root / "basic" / "EmoLabel" / "list_patition_label.txt"


# -- RAF-DB official layout ----------------------------------------------------------------


def test_rafdb_reads_both_splits_with_canonical_labels(tmp_path: Path) -> None:
    make_rafdb(tmp_path, TRAIN, TEST)
    manifests = read_rafdb(tmp_path)
    assert list(manifests) == ["train", "test"]
    assert manifests["train"].class_counts().tolist() == list(TRAIN)
    assert manifests["test"].class_counts().tolist() == list(TEST)
    first = manifests["train"]
    assert first.paths[0] == str(tmp_path / "basic/Image/aligned/train_00001_aligned.jpg")
    assert first.labels[0] == 0  # RAF-DB label 1 is surprise, index 0
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in first.paths)


def test_rafdb_accepts_basic_dir_and_original_variant(tmp_path: Path) -> None:
    make_rafdb(tmp_path, TRAIN, TEST)
    original = read_rafdb(tmp_path / "basic", variant="original")
    assert original["test"].paths[0] == str(tmp_path / "basic/Image/original/test_0001.jpg")
    assert len(original["train"]) == sum(TRAIN)
    with pytest.raises(DataError, match="variant"):
        read_rafdb(tmp_path, variant="cropped")


def test_rafdb_missing_root_and_label_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        read_rafdb(tmp_path / "nowhere")
    (tmp_path / "basic" / "Image" / "aligned").mkdir(parents=True)
    with pytest.raises(DataError, match=r"list_patition_label\.txt.*contains basic/"):
        read_rafdb(tmp_path)


def test_rafdb_reports_all_missing_images(tmp_path: Path) -> None:
    make_rafdb(tmp_path, TRAIN, TEST)
    aligned = tmp_path / "basic" / "Image" / "aligned"
    for i in (2, 4, 6, 8, 10, 12, 14):
        (aligned / f"train_{i:05d}_aligned.jpg").unlink()
    with pytest.raises(DataError) as err:
        read_rafdb(tmp_path)
    message = str(err.value)
    total = sum(TRAIN) + sum(TEST)
    assert f"7 of {total} images listed in {_label_file(tmp_path)}" in message
    assert "train_00002_aligned.jpg" in message and "(2 more)" in message
    assert "variant='original'" in message


def test_rafdb_bad_labels_and_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    make_rafdb(tmp_path, TRAIN, TEST)
    label_file = _label_file(tmp_path)
    lines = label_file.read_text().splitlines()
    lines[1] = "train_00002.jpg 8"
    lines[2] = "train_00003.jpg"
    lines[4] = "train_00005.jpg five"
    label_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_rafdb(tmp_path)
    message = str(err.value)
    assert message.startswith("3 bad lines")
    assert f"{label_file}:2 (train_00002.jpg): label 8 is outside RAF-DB's 1..7" in message
    assert f"{label_file}:3: malformed line 'train_00003.jpg'" in message
    assert f"{label_file}:5 (train_00005.jpg): label 'five' is not an integer" in message


def test_rafdb_empty_label_file(tmp_path: Path) -> None:
    make_rafdb(tmp_path, TRAIN, TEST)
    _label_file(tmp_path).write_text("\n")
    with pytest.raises(DataError, match="lists no images"):
        read_rafdb(tmp_path)


def test_rafdb_warns_about_absent_classes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_rafdb(tmp_path, (2, 0, 1, 1, 1, 1, 1), (1, 1, 1, 1, 1, 0, 0))
    with caplog.at_level(logging.WARNING, logger="fer_lightning.data"):
        read_rafdb(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'train' has no images of fear" in w for w in warnings)
    assert any("'test' has no images of anger, neutral" in w for w in warnings)


# -- RAF-DB Kaggle repackaging -------------------------------------------------------------


@pytest.mark.parametrize("csv_in_dataset", [False, True])
def test_kaggle_reads_labels_from_csv(tmp_path: Path, csv_in_dataset: bool) -> None:
    make_rafdb_kaggle(tmp_path, TRAIN, TEST, csv_in_dataset=csv_in_dataset)
    manifests = read_rafdb_kaggle(tmp_path)
    assert manifests["train"].class_counts().tolist() == list(TRAIN)
    assert manifests["test"].class_counts().tolist() == list(TEST)
    assert manifests["train"].paths[0] == str(tmp_path / "DATASET/train/1/train_00001_aligned.jpg")


def test_kaggle_missing_csv_and_images(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train_labels.csv / test_labels.csv not found"):
        read_rafdb_kaggle(tmp_path)
    make_rafdb_kaggle(tmp_path, TRAIN, TEST)
    (tmp_path / "DATASET/test/4/test_00004_aligned.jpg").unlink()
    (tmp_path / "DATASET/test/4/test_00005_aligned.jpg").unlink()
    with pytest.raises(DataError) as err:
        read_rafdb_kaggle(tmp_path)
    assert f"2 of {sum(TEST)} images listed in {tmp_path / 'test_labels.csv'}" in str(err.value)
    assert "test/4/test_00004_aligned.jpg, test/4/test_00005_aligned.jpg." in str(err.value)
    (tmp_path / "test_labels.csv").unlink()
    with pytest.raises(DataError, match=r"test_labels\.csv does not exist"):
        read_rafdb_kaggle(tmp_path)


def test_kaggle_bad_label_and_header(tmp_path: Path) -> None:
    make_rafdb_kaggle(tmp_path, TRAIN, TEST)
    label_file = tmp_path / "train_labels.csv"
    lines = label_file.read_text().splitlines()
    lines[3] = "train_00003_aligned.jpg,0"
    label_file.write_text("\n".join(lines) + "\n")
    where = rf"{label_file}:4 \(train_00003_aligned\.jpg\): label 0 is outside"
    with pytest.raises(DataError, match=rf"1 bad lines .*{where}"):
        read_rafdb_kaggle(tmp_path)
    label_file.write_text("file,emotion\nx.jpg,1\n")
    with pytest.raises(DataError, match=r"train_labels\.csv:1: header must name columns"):
        read_rafdb_kaggle(tmp_path)


# -- class folders and unlabeled folders ---------------------------------------------------


def test_class_folders_map_synonyms_numbers_and_extensions(tmp_path: Path) -> None:
    folders = {"Angry": 2, "disgusted": 1, "FEARFUL": 1, "happy": 3, "sad": 1, "Surprised": 2}
    make_class_folders(tmp_path, {"train": folders, "val": {"7": 2, "happiness": 1}})
    make_class_folders(tmp_path, {"train": {"neutral": 1}}, ext=".PNG")
    make_class_folders(tmp_path, {"train": {"neutral": 1}}, ext=".jpeg")  # img_000 again
    (tmp_path / "train" / "neutral" / "notes.txt").write_text("not an image")
    manifests = read_class_folders(tmp_path)
    assert list(manifests) == ["train", "val"]
    assert manifests["train"].class_counts().tolist() == [2, 1, 1, 3, 1, 2, 2]
    assert manifests["val"].class_counts().tolist() == [0, 0, 0, 1, 0, 0, 2]


def test_class_folders_unknown_name_lists_accepted_names(tmp_path: Path) -> None:
    make_class_folders(tmp_path, {"train": {"happy": 1, "contempt": 1}})
    with pytest.raises(DataError) as err:
        read_class_folders(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "train" / "contempt") in message
    assert "angry" in message and "1..7" in message
    make_class_folders(tmp_path / "numbers", {"train": {"8": 1}})
    with pytest.raises(DataError, match=r"train/8: label 8 is outside"):
        read_class_folders(tmp_path / "numbers")


def test_class_folders_empty_split_and_wrong_level(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "a", {"train": {"happy": 2}})
    (tmp_path / "a" / "test" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="split 'test' has no images"):
        read_class_folders(tmp_path / "a")
    make_class_folders(tmp_path / "b", {"train": emotion_folders(TRAIN)})
    with pytest.raises(DataError, match="holds class folders .* directly"):
        read_class_folders(tmp_path / "b" / "train")
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="has no split folders"):
        read_class_folders(tmp_path / "c")


def test_unlabeled_folder_reads_recursively(tmp_path: Path) -> None:
    make_unlabeled_folder(tmp_path / "faces", 5)
    (tmp_path / "faces" / "readme.md").write_text("x")
    manifest = read_unlabeled_folder(tmp_path / "faces")
    assert len(manifest) == 5
    assert (manifest.labels == UNKNOWN).all()
    assert manifest.paths.tolist() == sorted(manifest.paths.tolist())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        read_unlabeled_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_unlabeled_folder(tmp_path / "missing")


def test_every_layout_reads_the_same_counts(tmp_path: Path) -> None:
    make_rafdb(tmp_path / "rafdb", TRAIN, TEST)
    make_rafdb_kaggle(tmp_path / "rafdb_kaggle", TRAIN, TEST)
    make_class_folders(tmp_path / "folder", {"train": emotion_folders(TRAIN)})
    readers = {"rafdb": read_rafdb, "rafdb_kaggle": read_rafdb_kaggle, "folder": read_class_folders}
    for kind, reader in readers.items():
        assert reader(tmp_path / kind)["train"].class_counts().tolist() == list(TRAIN)
    original = read_rafdb(tmp_path / "rafdb", variant="original")
    assert "original" in original["train"].paths[0]


def test_describe_counts_and_flags_absent_classes() -> None:
    train = Manifest(np.array(["a", "b", "c"]), np.array([0, 0, 3]))
    pool = Manifest(np.array(["u", "v"]), np.array([UNKNOWN, UNKNOWN]))
    table = describe({"train": train, "extra": pool})
    lines = table.splitlines()
    assert lines[0].split() == ["emotion", "train", "extra"]
    assert lines[1].split() == ["surprise", "2", "0"]
    assert lines[2].split() == ["fear", "0", "!", "0"]
    assert lines[8].split() == ["unknown", "0", "2"]
    assert lines[9].split() == ["total", "3", "2"]
    absent = [e for e in EMOTIONS if e not in ("surprise", "happiness")]
    assert lines[10] == f"! train has no {', '.join(absent)}"
    assert len(lines) == 11  # the all-unknown split is not flagged


# -- decode check --------------------------------------------------------------------------


def _images_with_two_bad(tmp_path: Path) -> Manifest:
    paths = [write_image(tmp_path / f"ok_{i}.jpg", seed=i) for i in range(6)]
    truncate(paths[1])
    paths[4].write_bytes(b"")
    return Manifest(np.array([str(p) for p in paths]), np.arange(6) % 7)


def test_check_images_fails_on_truncated_and_empty_files(tmp_path: Path) -> None:
    manifest = _images_with_two_bad(tmp_path)
    with pytest.raises(DataError) as err:
        check_images(manifest)
    message = str(err.value)
    assert message.startswith("2 of 6 images cannot be used")
    assert "ok_1.jpg (truncated JPEG (no end-of-image marker))" in message
    assert "ok_4.jpg (not a decodable image" in message
    assert "data.on_corrupt=skip" in message


def test_check_images_skip_drops_bad_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = _images_with_two_bad(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fer_lightning.data"):
        kept = check_images(manifest, on_corrupt="skip")
    assert [Path(p).name for p in kept.paths] == ["ok_0.jpg", "ok_2.jpg", "ok_3.jpg", "ok_5.jpg"]
    assert kept.labels.tolist() == [0, 2, 3, 5]
    assert "skipping 2 of 6 unusable images" in caplog.text
    good = kept.subset(np.arange(2))
    assert check_images(good) is good
    with pytest.raises(ValueError, match="data.on_corrupt"):
        check_images(good, on_corrupt="ignore")


def test_duplicate_lines_are_an_error_naming_both_lines(tmp_path: Path) -> None:
    """Appending a label file's first lines again would put images in two splits."""
    make_rafdb(tmp_path, TRAIN, TEST)
    label_file = _label_file(tmp_path)
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join(lines + lines[:3]) + "\n")
    with pytest.raises(DataError) as err:
        read_rafdb(tmp_path)
    message = str(err.value)
    assert "3 duplicate lines" in message
    n = len(lines)
    assert f"{label_file}:{n + 1} (train_00001.jpg) repeats {label_file}:1" in message


def test_an_image_listed_with_two_labels_is_a_conflict(tmp_path: Path) -> None:
    make_rafdb(tmp_path, TRAIN, TEST)
    label_file = _label_file(tmp_path)
    lines = label_file.read_text().splitlines()
    name, label = lines[0].split()
    other = 1 + int(label) % 7
    label_file.write_text("\n".join([*lines, f"{name} {other}"]) + "\n")
    with pytest.raises(DataError, match=r"1 images are listed with two different labels"):
        read_rafdb(tmp_path)
    kaggle = tmp_path / "kaggle"
    make_rafdb_kaggle(kaggle, TRAIN, TEST)
    csv_file = kaggle / "test_labels.csv"
    rows = csv_file.read_text().splitlines()
    csv_file.write_text("\n".join([*rows, rows[1]]) + "\n")
    with pytest.raises(DataError, match=r"test_labels\.csv: 1 duplicate lines"):
        read_rafdb_kaggle(kaggle)


def test_a_label_file_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    make_rafdb(tmp_path, TRAIN, TEST)
    label_file = _label_file(tmp_path)
    data = label_file.read_bytes().splitlines(keepends=True)
    data[2] = b"train_00003.jpg \xff\n"
    label_file.write_bytes(b"".join(data))
    with pytest.raises(DataError, match=rf"{label_file}:3: not UTF-8 text \(byte 0xff\)"):
        read_rafdb(tmp_path)


def test_images_below_the_minimum_side_count_as_corrupt(tmp_path: Path) -> None:
    small = write_image(tmp_path / "small.jpg", size=8)
    good = write_image(tmp_path / "good.jpg", size=16)
    manifest = Manifest(np.array([str(small), str(good)]), np.array([0, 1]))
    too_small = r"small\.jpg \(8x8 px is smaller than data.min_image_side=16\)"
    with pytest.raises(DataError, match=too_small):
        check_images(manifest, min_side=16)
    kept = check_images(manifest, on_corrupt="skip", min_side=16)
    assert kept.paths.tolist() == [str(good)]
    assert check_images(manifest, min_side=8) is manifest


def test_label_files_with_a_byte_order_mark_read_like_plain_utf8(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM: it is not part of the first image's name."""
    make_rafdb(tmp_path / "raf", TRAIN, TEST)
    label_file = _label_file(tmp_path / "raf")
    label_file.write_bytes(b"\xef\xbb\xbf" + label_file.read_bytes())
    manifests = read_rafdb(tmp_path / "raf")
    assert manifests["train"].class_counts().tolist() == list(TRAIN)
    make_rafdb_kaggle(tmp_path / "kaggle", TRAIN, TEST)
    csv_file = tmp_path / "kaggle" / "train_labels.csv"
    csv_file.write_bytes(b"\xef\xbb\xbf" + csv_file.read_bytes())
    assert read_rafdb_kaggle(tmp_path / "kaggle")["train"].class_counts().tolist() == list(TRAIN)


def test_a_missing_unlabeled_folder_names_its_setting(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist or is not a directory; check data\.unl"):
        read_unlabeled_folder(tmp_path / "nope")
