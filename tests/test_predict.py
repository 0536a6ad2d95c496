"""fer-predict through Hydra: files, folders, globs, photos, broken inputs, foreign checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import pytorch_lightning as pl
import torch
import yaml

from fer_lightning.data.images import read_rgb
from fer_lightning.data.synthetic_faces import render_face, render_face_with_landmarks
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import CheckpointError, ConfigError
from fer_lightning.faces.align import FaceTemplate, align_face, crop_face
from fer_lightning.faces.detect import LANDMARK_NAMES, MTCNNDetector
from fer_lightning.inference import LANDMARK_COLUMNS, PROB_COLUMNS, collect_inputs
from fer_lightning.models.checkpoints import load_classifier
from fer_lightning.models.classifier import FERClassifier
from tests.helpers.checkpoints import fit_and_save
from tests.helpers.cli import fer

FACE_BOX = (130, 60, 100, 100)  # where the test photo's face is pasted: x, y, w, h
CONF = Path(__file__).resolve().parents[1] / "conf"


def background(rng: np.random.Generator, height: int = 240, width: int = 320) -> np.ndarray:
    """A smooth, muted, grainy backdrop: texture without anything face-like."""
    cells = rng.integers(60, 200, (height // 30, width // 30, 3), dtype=np.uint8)
    smooth = cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    grain = rng.normal(0.0, 6.0, (height, width, 3))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """Three PNG faces, one JPEG face and a JPEG of garbage bytes."""
    folder = tmp_path_factory.mktemp("faces")
    for i in range(4):
        face = render_face(np.random.default_rng(i), i, 0.9, size=100)
        write_rgb(folder / f"face_{i}.{'jpg' if i == 3 else 'png'}", face)
    (folder / "broken.jpg").write_bytes(b"\x00not a jpeg\xff" * 10)
    return folder


def predict(tmp: Path, ckpt: Path, inputs: str, *extra: str, check: bool = True):
    out = tmp / "pred.csv"
    args = [
        f"ckpt_path={ckpt}",
        f"inputs='{inputs}'",
        f"output={out}",
        f"hydra.run.dir={tmp / 'hydra'}",
        "batch_size=2",
        *extra,
    ]
    return fer("predict", args, check), out


def assert_predicted(row: dict[str, str]) -> None:
    probs = np.array([float(row[c]) for c in PROB_COLUMNS])
    assert row["status"] == "ok"
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert row["emotion"] == EMOTIONS[int(probs.argmax())]
    assert float(row["confidence"]) == pytest.approx(probs.max(), abs=1e-6)


def test_predict_one_file_matches_the_model(tmp_path, ckpt, faces):
    proc, out = predict(tmp_path, ckpt, str(faces / "face_0.png"), "detector=none")
    (row,) = read_rows(out)
    assert_predicted(row)
    assert row["path"] == str(faces / "face_0.png")
    assert "1 predictions from 1 files" in proc.stdout and "happiness" in proc.stdout
    # size and normalisation come from the checkpoint: same numbers as the model itself
    model = load_classifier(ckpt)
    rgb = cv2.cvtColor(cv2.imread(str(faces / "face_0.png")), cv2.COLOR_BGR2RGB)
    expected = model.predict_probs(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].numpy()
    got = np.array([float(row[c]) for c in PROB_COLUMNS])
    assert np.abs(got - expected).max() < 1e-5


def test_predict_folder_reports_unreadable_files_and_goes_on(tmp_path, ckpt, faces):
    proc, out = predict(tmp_path, ckpt, str(faces), "detector=none")
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert set(rows) == {"face_0.png", "face_1.png", "face_2.png", "face_3.jpg", "broken.jpg"}
    assert rows["broken.jpg"]["status"] == "unreadable" and rows["broken.jpg"]["emotion"] == ""
    for name in ("face_0.png", "face_1.png", "face_2.png", "face_3.jpg"):
        assert_predicted(rows[name])
    assert "4 predictions from 5 files" in proc.stdout
    assert "unreadable: 1 (" in proc.stdout  # the summary
    assert f"WARNING] - skipping {faces / 'broken.jpg'}" in proc.output


def test_predict_glob(tmp_path, ckpt, faces):
    _, out = predict(tmp_path, ckpt, str(faces / "*.png"), "detector=none")
    rows = read_rows(out)
    assert [Path(r["path"]).name for r in rows] == ["face_0.png", "face_1.png", "face_2.png"]
    for row in rows:
        assert_predicted(row)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A photo with one pasted face, an empty room, a broken file; and the face's landmarks."""
    folder = tmp_path_factory.mktemp("photos")
    photo = background(np.random.default_rng(1))
    x, y, w, h = FACE_BOX
    face, landmarks = render_face_with_landmarks(np.random.default_rng(1), 3, 0.8, size=w)
    photo[y : y + h, x : x + w] = face
    write_rgb(folder / "photo.png", photo)
    write_rgb(folder / "empty_room.png", background(np.random.default_rng(2)))
    (folder / "broken.jpg").write_bytes(b"\x00not a jpeg\xff" * 10)
    return folder, landmarks + (x, y)


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    width = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap = width * max(0, min(ay + ah, by + bh) - max(ay, by))
    return overlap / (aw * ah + bw * bh - overlap)


def test_mtcnn_finds_aligns_and_reports_faces(tmp_path, ckpt, photos):
    folder, truth = photos
    proc, out = predict(tmp_path, ckpt, str(folder))
    with out.open(newline="") as f:
        header = next(csv.reader(f))
    assert header == [
        "path",
        "face",
        "x",
        "y",
        "w",
        "h",
        "score",
        *(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"),
        "status",
        "emotion",
        "confidence",
        *PROB_COLUMNS,
    ]
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    face = rows["photo.png"]
    assert_predicted(face)
    assert face["face"] == "1" and float(face["score"]) >= 0.9  # detector.min_score
    landmarks = np.array([float(face[c]) for c in LANDMARK_COLUMNS]).reshape(5, 2)
    error = np.linalg.norm(landmarks - truth, axis=1)  # px, on a 100 px face
    assert error.mean() < 5 and error.max() < 8  # MTCNN puts drawn eyes and noses a bit high
    assert iou(tuple(int(face[k]) for k in "xywh"), FACE_BOX) > 0.4
    empty = rows["empty_room.png"]
    assert empty["status"] == "no_face" and empty["face"] == "0" and empty["emotion"] == ""
    assert empty["score"] == "" and empty[LANDMARK_COLUMNS[0]] == ""
    assert rows["broken.jpg"]["status"] == "unreadable"
    assert "no face found: 1" in proc.stdout and "unreadable: 1" in proc.stdout
    assert f"WARNING] - skipping {folder / 'broken.jpg'}" in proc.output


def test_predictions_are_the_models_on_the_aligned_face(tmp_path, ckpt, photos, exported_onnx):
    """fer-predict = align onto the template, then the model (or ONNX) on the aligned face.

    Alignment happens before the model, so the exported ONNX graph is unchanged: fed the
    aligned face, it gives fer-predict's probabilities.
    """
    folder, _ = photos
    _, out = predict(tmp_path, ckpt, str(folder / "photo.png"), "face_template=synthetic")
    (row,) = read_rows(out)
    photo = read_rgb(str(folder / "photo.png"))
    (face,) = MTCNNDetector(device="cpu").detect([photo])[0]  # exact landmarks (CSV: 0.1 px)
    assert np.abs(face.landmarks.ravel() - [float(row[c]) for c in LANDMARK_COLUMNS]).max() < 0.06
    synthetic = yaml.safe_load((CONF / "face_template" / "synthetic.yaml").read_text())
    aligned = align_face(photo, face.landmarks, FaceTemplate(**synthetic))
    x = torch.from_numpy(aligned).permute(2, 0, 1)[None].contiguous()
    got = np.array([float(row[c]) for c in PROB_COLUMNS])
    model = load_classifier(ckpt)
    assert np.abs(model.predict_probs(x)[0].numpy() - got).max() < 1e-4
    session = ort.InferenceSession(str(exported_onnx), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"input": x.numpy()})
    assert np.abs(probs[0] - got).max() < 1e-4


def test_haar_and_none_still_work(tmp_path, ckpt, photos):
    folder, _ = photos
    proc, out = predict(tmp_path, ckpt, str(folder / "*.png"), "detector=haar")
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    face = rows["photo.png"]
    assert_predicted(face)
    assert iou(tuple(int(face[k]) for k in "xywh"), FACE_BOX) > 0.5
    assert face["score"] == "" and face[LANDMARK_COLUMNS[0]] == ""  # Haar gives neither
    assert rows["empty_room.png"]["status"] == "no_face"
    assert "gives no landmarks: its faces are square crops" in proc.output
    _, out = predict(tmp_path, ckpt, str(folder / "*.png"), "detector=none")
    rows = read_rows(out)
    assert [Path(r["path"]).name for r in rows] == ["empty_room.png", "photo.png"]
    assert all(set(r) == {"path", "status", "emotion", "confidence", *PROB_COLUMNS} for r in rows)


def test_min_face_size_drops_small_faces(tmp_path, ckpt, photos):
    folder, _ = photos
    _, out = predict(tmp_path, ckpt, str(folder / "photo.png"), "detector.min_face_size=150")
    assert read_rows(out)[0]["status"] == "no_face"
    bad = tmp_path / "bad"
    bad.mkdir()
    proc, out = predict(bad, ckpt, str(folder), "detector.min_score=1.5", check=False)
    assert proc.returncode != 0 and not out.exists()
    assert "detector (mtcnn): invalid min_score=1.5 (a probability, 0..1)" in proc.stderr


def test_draw_writes_the_photo_with_its_faces(tmp_path, ckpt, photos):
    folder, _ = photos
    proc, out = predict(tmp_path, ckpt, str(folder), "draw=true")
    row = next(r for r in read_rows(out) if r["path"].endswith("photo.png"))
    landmarks = np.array([float(row[c]) for c in LANDMARK_COLUMNS]).reshape(5, 2)
    drawn_dir = tmp_path / "hydra" / "faces"
    assert sorted(p.name for p in drawn_dir.iterdir()) == ["photo.png"]  # only photos with faces
    assert f"drew the faces of 1 images in {drawn_dir}" in proc.stdout
    drawn = read_rgb(str(drawn_dir / "photo.png"))
    photo = read_rgb(str(folder / "photo.png"))
    assert drawn.shape == photo.shape
    changed = np.abs(drawn.astype(int) - photo.astype(int)).sum(axis=2) > 0
    for px, py in landmarks.round().astype(int):  # a dot on every landmark
        assert changed[py - 1 : py + 2, px - 1 : px + 2].all()
    assert changed.mean() < 0.1  # the rest of the photo is untouched


def test_crop_face_is_square_with_margin_even_at_the_edge():
    rgb = np.arange(50 * 80 * 3, dtype=np.uint8).reshape(50, 80, 3)
    assert crop_face(rgb, (30, 10, 20, 30), margin=0.2).shape == (42, 42, 3)
    corner = crop_face(rgb, (0, 0, 20, 20), margin=0.5)
    assert corner.shape == (40, 40, 3)
    assert (corner[10:30, 10:30] == rgb[:20, :20]).all()  # the face stays centred


def test_foreign_checkpoint_fails_clearly(tmp_path):
    class Other(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    other = fit_and_save(Other(), tmp_path / "other.ckpt", (torch.randn(2, 3),))
    write_rgb(tmp_path / "face.png", render_face(np.random.default_rng(0), 0, 0.5))
    proc, out = predict(tmp_path, other, str(tmp_path / "face.png"), check=False)
    assert proc.returncode != 0 and not out.exists()
    assert f"{other} is not a fer_lightning FERClassifier checkpoint" in proc.stderr


def test_plain_state_dict_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(FERClassifier(image_size=32).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights\.pt is not a fer_lightning FERClassifier"):
        load_classifier(path)


def test_empty_inputs_fail_clearly(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images found"):
        collect_inputs(tmp_path)
    with pytest.raises(ValueError, match="no images found"):
        collect_inputs(str(tmp_path / "*.jpg"))
    with pytest.raises(ConfigError, match="no such file or folder"):
        collect_inputs(tmp_path / "missing")


def predict_to(tmp: Path, ckpt: Path, inputs: str, output: Path):
    args = [
        f"ckpt_path={ckpt}",
        f"inputs='{inputs}'",
        f"output='{output}'",
        f"hydra.run.dir={tmp / 'hydra'}",
        "detector=none",
    ]
    return fer("predict", args, check=False)


def test_output_that_would_destroy_a_file_is_refused_before_any_work(tmp_path, ckpt, faces):
    photo = tmp_path / "photo.png"
    photo.write_bytes((faces / "face_0.png").read_bytes())
    before = photo.read_bytes()
    proc = predict_to(tmp_path, ckpt, str(photo), photo)
    assert proc.returncode == 2 and "Traceback" not in proc.output
    assert f"output={photo} is one of the inputs" in proc.stderr
    assert photo.read_bytes() == before
    notes = tmp_path / "notes.csv"
    notes.write_text("name,phone\nAda,123\n")
    proc = predict_to(tmp_path, ckpt, str(photo), notes)
    assert proc.returncode == 2 and f"output={notes} exists and is not a fer-predict CSV" in (
        proc.stderr
    )
    assert notes.read_text() == "name,phone\nAda,123\n"
    proc = predict_to(tmp_path, ckpt, str(photo), tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.output
    assert f"output={tmp_path} is a folder; name the CSV file" in proc.stderr
    # a previous prediction CSV may be replaced
    out = tmp_path / "pred.csv"
    assert predict_to(tmp_path, ckpt, str(photo), out).returncode == 0
    proc = predict_to(tmp_path, ckpt, str(faces / "face_1.png"), out)
    assert proc.returncode == 0 and read_rows(out)[0]["path"].endswith("face_1.png")


def test_inputs_without_a_readable_image_are_an_error(tmp_path, ckpt):
    notes = tmp_path / "notes.txt"
    notes.write_text("no images here")
    out = tmp_path / "pred.csv"
    proc = predict_to(tmp_path, ckpt, str(notes), out)
    assert proc.returncode == 2 and "Traceback" not in proc.output
    assert f"no input is a readable image: {notes}" in proc.stderr
    assert not out.exists()


def test_slow_speeds_keep_their_digits():
    from fer_lightning.console import rate

    assert rate(1, 4.0) == "0.25"
    assert rate(2, 3.0) == "0.667"
    assert rate(50, 4.0) == "12.5"
    assert rate(1000, 2.0) == "500"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the case is a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(tmp_path, ckpt, faces):
    proc, out = predict(tmp_path, ckpt, str(faces / "face_0.png"), "device=cuda", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.output
    assert "device=cuda: this machine has no CUDA device; use device=auto" in proc.stderr
    assert not out.exists()
