"""fer-predict through Hydra: files, folders, globs, photos, broken inputs, foreign checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from fer_lightning.data.synthetic import render_face
from fer_lightning.data.transforms import eval_transform
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import CheckpointError
from fer_lightning.inference import (
    PROB_COLUMNS,
    collect_inputs,
    crop_face,
)
from fer_lightning.models.checkpoints import load_classifier
from fer_lightning.models.classifier import FERClassifier

from cli import run

FACE_BOX = (130, 60, 100, 100)  # where the test photo's face is pasted: x, y, w, h


def fit_and_save(module: pl.LightningModule, path: Path, batch: tuple[torch.Tensor, ...]) -> Path:
    """One optimiser step through the real Lightning loop, then a real checkpoint."""
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(TensorDataset(*batch), batch_size=len(batch[0])))
    trainer.save_checkpoint(path)
    return path


def make_checkpoint(path: Path) -> Path:
    """A tiny FERClassifier (32 px MobileNet V1) checkpoint."""
    targets = torch.eye(len(EMOTIONS))[torch.arange(4) % len(EMOTIONS)]
    batch = (torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), targets, torch.ones(4))
    return fit_and_save(FERClassifier(backbone="mobilenetv1_100", image_size=32), path, batch)


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


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


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
    proc = run(
        "predict",
        [
            f"ckpt_path={ckpt}",
            f"inputs='{inputs}'",
            f"output={out}",
            f"hydra.run.dir={tmp / 'hydra'}",
            "batch_size=2",
            *extra,
        ],
        tmp,
        check,
    )
    return proc, out


def assert_predicted(row: dict[str, str]) -> None:
    probs = np.array([float(row[c]) for c in PROB_COLUMNS])
    assert row["status"] == "ok"
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert row["emotion"] == EMOTIONS[int(probs.argmax())]
    assert float(row["confidence"]) == pytest.approx(probs.max(), abs=1e-6)


def test_predict_one_file_matches_the_model(tmp_path, ckpt, faces):
    proc, out = predict(tmp_path, ckpt, str(faces / "face_0.png"))
    (row,) = read_rows(out)
    assert_predicted(row)
    assert row["path"] == str(faces / "face_0.png")
    assert "1 predictions from 1 files" in proc.stdout and "happiness" in proc.stdout
    # size and normalisation come from the checkpoint: same numbers as the model itself
    model = load_classifier(ckpt)
    transform = eval_transform(32)
    rgb = cv2.cvtColor(cv2.imread(str(faces / "face_0.png")), cv2.COLOR_BGR2RGB)
    expected = model.predict_probs(transform(image=rgb)["image"][None])[0].numpy()
    got = np.array([float(row[c]) for c in PROB_COLUMNS])
    assert np.abs(got - expected).max() < 1e-5


def test_predict_folder_reports_unreadable_files_and_goes_on(tmp_path, ckpt, faces):
    proc, out = predict(tmp_path, ckpt, str(faces))
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert set(rows) == {"face_0.png", "face_1.png", "face_2.png", "face_3.jpg", "broken.jpg"}
    assert rows["broken.jpg"]["status"] == "unreadable" and rows["broken.jpg"]["emotion"] == ""
    for name in ("face_0.png", "face_1.png", "face_2.png", "face_3.jpg"):
        assert_predicted(rows[name])
    assert "4 predictions from 5 files" in proc.stdout
    assert "unreadable: 1 (" in proc.stdout  # the summary
    assert f"WARNING] - skipping {faces / 'broken.jpg'}" in proc.stdout + proc.stderr


def test_predict_glob(tmp_path, ckpt, faces):
    _, out = predict(tmp_path, ckpt, str(faces / "*.png"))
    rows = read_rows(out)
    assert [Path(r["path"]).name for r in rows] == ["face_0.png", "face_1.png", "face_2.png"]
    for row in rows:
        assert_predicted(row)


def test_detect_faces_in_photos(tmp_path, ckpt):
    photo = background(np.random.default_rng(1))
    x, y, w, h = FACE_BOX
    photo[y : y + h, x : x + w] = render_face(np.random.default_rng(1), 3, 0.8, size=w)
    write_rgb(tmp_path / "photo.png", photo)
    write_rgb(tmp_path / "empty_room.png", background(np.random.default_rng(2)))
    proc, out = predict(tmp_path, ckpt, str(tmp_path / "*.png"), "detect_faces=true")
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert rows["empty_room.png"]["status"] == "no_face"
    assert rows["empty_room.png"]["emotion"] == "" and rows["empty_room.png"]["face"] == "0"
    face = rows["photo.png"]
    assert_predicted(face)
    bx, by, bw, bh = (int(face[k]) for k in "xywh")
    overlap = max(0, min(bx + bw, x + w) - max(bx, x)) * max(0, min(by + bh, y + h) - max(by, y))
    assert overlap / (bw * bh + w * h - overlap) > 0.5  # IoU with the pasted face
    assert "no face found: 1" in proc.stdout and "empty_room.png" in proc.stdout


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
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        collect_inputs(tmp_path / "missing")
