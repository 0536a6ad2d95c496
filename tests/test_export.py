"""fer-export through Hydra: the ONNX model runs in onnxruntime and matches PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from omegaconf import OmegaConf

from fer_lightning.cli.export import export
from fer_lightning.emotions import EMOTIONS
from fer_lightning.export import INPUT_NAME, OUTPUT_NAME
from fer_lightning.models.checkpoints import load_classifier


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
    assert meta["tta_flip"] == "false" and meta["backbone"] == "mobilenetv1_100"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # dynamic batch axis
    assert dims[1].dim_value == 3  # RGB; height and width are free: the graph resizes
    assert not dims[2].HasField("dim_value") and not dims[3].HasField("dim_value")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_unknown_format_fails_clearly():
    cfg = OmegaConf.create({"ckpt_path": "x.ckpt", "format": "tflite", "output": "m.tflite"})
    with pytest.raises(ValueError, match="format=tflite is not supported"):
        export(cfg)
