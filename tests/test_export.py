"""fer-export through Hydra: the ONNX model runs in onnxruntime and matches PyTorch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from omegaconf import OmegaConf

from fer_lightning.cli.export import export
from fer_lightning.emotions import EMOTIONS, PROB_COLUMNS
from fer_lightning.export import INPUT_NAME, OUTPUT_NAME
from fer_lightning.models.checkpoints import load_classifier
from fer_lightning.resize import resize_image
from tests.helpers.checkpoints import TINY_BACKBONE
from tests.helpers.cli import fer


@pytest.fixture
def exported(tiny_checkpoint, onnx_export):
    return tiny_checkpoint, *onnx_export


def test_onnx_matches_pytorch_for_any_batch_size(exported):
    ckpt, out, proc = exported
    assert f"wrote {out}" in proc.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["fer.onnx"]  # one file, no temp left
    model = load_classifier(ckpt)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    generator = torch.Generator().manual_seed(0)
    for batch in (3, 1):
        x = torch.randint(0, 256, (batch, 3, 32, 32), generator=generator, dtype=torch.uint8)
        (got,) = session.run(None, {INPUT_NAME: x.numpy()})
        expected = model.predict_probs(x).numpy()
        assert got.shape == (batch, len(EMOTIONS))
        assert np.abs(got - expected).max() <= 1e-4
        assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)  # probabilities, not logits
    for size in (20, 48):  # smaller and larger faces than the training size: resized in the graph
        x = torch.randint(0, 256, (2, 3, size, size), generator=generator, dtype=torch.uint8)
        (got,) = session.run(None, {INPUT_NAME: x.numpy()})
        assert np.abs(got - model.predict_probs(x).numpy()).max() <= 1e-4, size


def test_onnx_metadata_describes_the_input_and_labels(exported):
    _, out, _ = exported
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["labels"]) == list(EMOTIONS)
    assert meta["image_size"] == "32"
    assert meta["input"].startswith("uint8 NCHW RGB")
    assert meta["output"].startswith("softmax probabilities")
    assert meta["tta_flip"] == "false" and meta["backbone"] == TINY_BACKBONE
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # dynamic batch axis
    assert dims[1].dim_value == 3  # RGB; height and width are free: the graph resizes
    assert not dims[2].HasField("dim_value") and not dims[3].HasField("dim_value")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_unknown_format_fails_clearly():
    cfg = OmegaConf.create({"ckpt_path": "x.ckpt", "format": "tflite", "output": "m.tflite"})
    with pytest.raises(ValueError, match="format=tflite is not supported"):
        export(cfg)


def test_onnx_gives_fer_predicts_probabilities_on_faces_smaller_and_larger(
    tmp_path, exported, exported_onnx
):
    """One resize everywhere: the graph fed a face of any size = fer-predict detector=none.

    The checkpoint trains at 32 px; faces of 20 px (enlarged) and of 48 and 100 px (shrunk)
    go to the graph as they are. Before, the graph's antialiased bilinear resize disagreed
    with the CPU's area resize of fer-predict (and of training and evaluation).
    """
    ckpt, _, _ = exported
    rng = np.random.default_rng(0)
    faces = {}
    for size in (20, 48, 100):
        noise = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        rgb = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        faces[size] = tmp_path / f"face_{size}.png"
        assert cv2.imwrite(str(faces[size]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "pred.csv"
    args = [f"ckpt_path={ckpt}", f"inputs={tmp_path}", f"output={out}", "detector=none"]
    fer("predict", [*args, f"hydra.run.dir={tmp_path / 'hydra'}"])
    with out.open(newline="") as f:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    session = ort.InferenceSession(str(exported_onnx), providers=["CPUExecutionProvider"])
    for size, path in faces.items():
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        (probs,) = session.run(None, {INPUT_NAME: rgb.transpose(2, 0, 1)[None].copy()})
        predicted = np.array([float(rows[path.name][c]) for c in PROB_COLUMNS])
        assert np.abs(probs[0] - predicted).max() <= 1e-4, size


def test_the_resize_is_opencvs_cpu_filter():
    """Training's CPU crops (cv2 area / linear, uint8) and the model's resize: one filter."""
    rng = np.random.default_rng(1)
    for source, size in ((100, 32), (48, 32), (20, 32), (100, 64)):
        cells = rng.integers(0, 256, (source // 4, source // 4, 3), dtype=np.uint8)
        rgb = cv2.resize(cells, (source, source), interpolation=cv2.INTER_CUBIC)
        flag = cv2.INTER_AREA if source > size else cv2.INTER_LINEAR
        opencv = cv2.resize(rgb, (size, size), interpolation=flag).astype(np.float32)
        ours = resize_image(rgb, size).permute(1, 2, 0).numpy()
        assert np.abs(ours - opencv).max() < 1.0, (source, size)  # uint8 rounding only
