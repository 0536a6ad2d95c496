"""The synthetic RAF-DB set: layout, proportions, determinism, caching, expressions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_lightning.cli.synth import main as synth_main
from fer_lightning.data import synthetic
from fer_lightning.data.synthetic import SyntheticRafdb, class_counts, generate_rafdb
from fer_lightning.data.synthetic_faces import render_face
from fer_lightning.emotions import EMOTIONS, RAFDB_TEST_COUNTS, RAFDB_TRAIN_COUNTS

LABELS = "basic/EmoLabel/list_patition_label.txt"
IMAGES = "basic/Image/aligned"
NEUTRAL, HAPPY = EMOTIONS.index("neutral"), EMOTIONS.index("happiness")


def read_labels(root: Path) -> dict[str, int]:
    """Parse the label file independently of the project's reader."""
    lines = (root / LABELS).read_text().splitlines()
    return {name: int(label) for name, label in (line.split(" ") for line in lines)}


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate_rafdb(tmp_path_factory.mktemp("syn") / "rafdb", n_train=60, n_test=25, seed=3)


def test_class_counts_largest_remainder() -> None:
    for n in (0, 5, 7, 8, 100, 3000, 12271):
        counts = class_counts(n, RAFDB_TRAIN_COUNTS)
        assert counts.sum() == n
        quota = n * np.array(RAFDB_TRAIN_COUNTS) / sum(RAFDB_TRAIN_COUNTS)
        if n >= 100:  # big enough that no class needs topping up to 1
            assert np.abs(counts - quota).max() < 1
        if n >= 7:
            assert counts.min() >= 1
    assert class_counts(12271, RAFDB_TRAIN_COUNTS).tolist() == list(RAFDB_TRAIN_COUNTS)


def test_layout_and_label_file(small_set: Path) -> None:
    labels = read_labels(small_set)
    names = list(labels)
    assert len(names) == 85
    assert all(re.fullmatch(r"train_\d{5}\.jpg", n) for n in names[:60])
    assert all(re.fullmatch(r"test_\d{4}\.jpg", n) for n in names[60:])
    assert names[0] == "train_00001.jpg" and names[60] == "test_0001.jpg"
    assert set(labels.values()) <= set(range(1, 8))
    images = {p.name for p in (small_set / IMAGES).iterdir()}
    assert images == {n.replace(".jpg", "_aligned.jpg") for n in names}
    meta = json.loads((small_set / "synthetic.json").read_text())
    assert {k: meta[k] for k in ("seed", "n_train", "n_test", "image_size", "label_noise")} == {
        "seed": 3,
        "n_train": 60,
        "n_test": 25,
        "image_size": 100,
        "label_noise": 0.0,
    }
    assert "version" in meta


def test_class_counts_follow_rafdb(small_set: Path) -> None:
    labels = read_labels(small_set)
    for split, ref, n in (("train", RAFDB_TRAIN_COUNTS, 60), ("test", RAFDB_TEST_COUNTS, 25)):
        ys = [y - 1 for name, y in labels.items() if name.startswith(split)]
        assert np.bincount(ys, minlength=7).tolist() == class_counts(n, ref).tolist()


def test_images_are_rgb_jpeg_of_the_requested_size(small_set: Path) -> None:
    for path in sorted((small_set / IMAGES).iterdir())[:10]:
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (100, 100))


def test_name_width_grows_with_the_count() -> None:
    assert synthetic._image_name("test", 0, 10) == "test_0001"
    assert synthetic._image_name("test", 12344, 12345) == "test_12345"


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    kw = dict(n_train=10, n_test=5, image_size=48)
    a = file_bytes(generate_rafdb(tmp_path / "a", seed=1, **kw))
    b = file_bytes(generate_rafdb(tmp_path / "b", seed=1, **kw))
    c = file_bytes(generate_rafdb(tmp_path / "c", seed=2, **kw))
    assert a == b
    assert a.keys() == c.keys()
    jpegs = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != c[k] for k in jpegs)


def test_workers_do_not_change_the_output(tmp_path: Path) -> None:
    kw = dict(n_train=16, n_test=6, seed=5, image_size=48)
    one = file_bytes(generate_rafdb(tmp_path / "one", workers=1, **kw))
    two = file_bytes(generate_rafdb(tmp_path / "two", workers=2, **kw))
    assert one == two


def test_ensure_caches_and_regenerates(tmp_path: Path) -> None:
    root = tmp_path / "rafdb"
    source = SyntheticRafdb(n_train=8, n_test=7, seed=0, image_size=32)
    assert source.ensure(root) == root
    meta = root / "synthetic.json"
    stamp = meta.stat().st_mtime_ns
    first = root / IMAGES / "train_00001_aligned.jpg"
    first_stamp = first.stat().st_mtime_ns
    manifests = source(root)  # a data source: root -> manifests by split, from the cache
    assert {k: len(v) for k, v in manifests.items()} == {"train": 8, "test": 7}
    assert meta.stat().st_mtime_ns == stamp
    assert first.stat().st_mtime_ns == first_stamp
    # workers does not change the output, so it is not part of the cache key
    SyntheticRafdb(n_train=8, n_test=7, seed=0, image_size=32, workers=2).ensure(root)
    assert meta.stat().st_mtime_ns == stamp

    SyntheticRafdb(n_train=9, n_test=7, seed=1, image_size=32).ensure(root)
    assert json.loads(meta.read_text())["seed"] == 1
    assert len(read_labels(root)) == 16
    assert len(list((root / IMAGES).iterdir())) == 16
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["rafdb"]


def test_refuses_to_overwrite_other_data(tmp_path: Path) -> None:
    real = tmp_path / "RAF-DB"
    (real / "basic").mkdir(parents=True)
    with pytest.raises(ValueError, match=re.escape(str(real))):
        SyntheticRafdb(n_train=7, n_test=7).ensure(real)
    with pytest.raises(ValueError, match="not a synthetic data set"):
        generate_rafdb(real, n_train=7, n_test=7)
    assert [p.name for p in real.iterdir()] == ["basic"]
    empty = tmp_path / "empty"
    empty.mkdir()
    SyntheticRafdb(n_train=7, n_test=7, image_size=32).ensure(empty)
    assert (empty / "synthetic.json").is_file()


def test_failed_generation_leaves_the_old_set(tmp_path: Path, monkeypatch) -> None:
    root = generate_rafdb(tmp_path / "rafdb", n_train=7, n_test=7, image_size=32)
    before = file_bytes(root)
    calls = []

    def crash(task):
        calls.append(task)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return 0.5

    monkeypatch.setattr(synthetic, "_write_image", crash)
    with pytest.raises(KeyboardInterrupt):
        generate_rafdb(root, n_train=7, n_test=7, seed=9, image_size=32)
    assert file_bytes(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["rafdb"]


def test_label_noise_replaces_the_requested_fraction(tmp_path: Path) -> None:
    kw = dict(n_train=200, n_test=0, seed=4, image_size=16)
    clean_root = generate_rafdb(tmp_path / "clean", **kw)
    noisy_root = generate_rafdb(tmp_path / "noisy", label_noise=0.2, **kw)
    clean, noisy = read_labels(clean_root), read_labels(noisy_root)
    assert clean.keys() == noisy.keys()
    assert sum(clean[k] != noisy[k] for k in clean) == 40
    # the images show the true expression: noise only touches the label file
    images = [k for k in file_bytes(clean_root) if k.endswith(".jpg")]
    assert file_bytes(clean_root).keys() == file_bytes(noisy_root).keys()
    for k in images[:20]:
        assert (clean_root / k).read_bytes() == (noisy_root / k).read_bytes()
    rows = (noisy_root / "synthetic_labels.csv").read_text().splitlines()[1:]
    for row in rows:
        name, emotion, label, clean_label, _ = row.split(",")
        assert int(clean_label) == clean[name] and int(label) == noisy[name]
        assert EMOTIONS[int(clean_label) - 1] == emotion


def test_render_face_shape_and_rng_use() -> None:
    states = set()
    for label in range(7):
        rng = np.random.default_rng(11)
        img = render_face(rng, label, 0.8, size=64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        states.add(json.dumps(rng.bit_generator.state))
    assert len(states) == 1  # the label never changes what is drawn from the RNG
    with pytest.raises(ValueError, match="0..6"):
        render_face(np.random.default_rng(0), 7, 0.5)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_expressions_grow_with_intensity() -> None:
    for seed in range(4):
        neutral = render_face(np.random.default_rng(seed), NEUTRAL, 1.0)
        for label in range(7):
            if label == NEUTRAL:
                continue
            faint = render_face(np.random.default_rng(seed), label, 0.05)
            strong = render_face(np.random.default_rng(seed), label, 1.0)
            assert mean_abs_diff(strong, neutral) > 5 * mean_abs_diff(faint, neutral), (
                seed,
                EMOTIONS[label],
            )
        happy = render_face(np.random.default_rng(seed), HAPPY, 1.0)
        assert mean_abs_diff(happy, neutral) > 0.5
        surprise = render_face(np.random.default_rng(seed), EMOTIONS.index("surprise"), 1.0)
        fear = render_face(np.random.default_rng(seed), EMOTIONS.index("fear"), 1.0)
        assert mean_abs_diff(surprise, fear) > 0.3  # alike, yet not identical


def test_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    synth_main(["--out", str(out), "--train", "14", "--test", "7", "--seed", "2", "--size", "40"])
    printed = capsys.readouterr().out
    assert "img/s" in printed
    train, test = class_counts(14, RAFDB_TRAIN_COUNTS), class_counts(7, RAFDB_TEST_COUNTS)
    for name, n_train, n_test in zip(EMOTIONS, train, test, strict=True):
        assert re.search(rf"^{name}\s+{n_train}\s+{n_test}$", printed, re.MULTILINE)
    assert len(read_labels(out)) == 21
    with Image.open(out / IMAGES / "test_0001_aligned.jpg") as im:
        assert im.size == (40, 40)


def test_cli_never_deletes_a_users_files_nor_locks_the_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    args = ["--out", str(out), "--train", "7", "--test", "7", "--size", "32"]
    synth_main(args)
    assert out.stat().st_mode & 0o777 == 0o755  # not mkdtemp's drwx------
    notes = out / "notes.txt"
    notes.write_text("mine")
    (out / "basic" / "Image" / "aligned" / "extra_face.jpg").write_bytes(b"mine too")
    with pytest.raises(SystemExit) as exit_info:
        synth_main([*args, "--seed", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"fer-synth: error: {out} holds files fer-synth did not write" in err
    assert str(out / "basic" / "Image" / "aligned" / "extra_face.jpg") in err and "1 more" in err
    assert notes.read_text() == "mine"
    notes.unlink()
    (out / "basic" / "Image" / "aligned" / "extra_face.jpg").unlink()
    synth_main([*args, "--seed", "5", "--train", "9"])  # only its own files: replaced
    assert len(read_labels(out)) == 16 and out.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
