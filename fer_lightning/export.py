"""ONNX export of a FERClassifier: softmax probabilities, dynamic batch, self-describing.

The graph outputs probabilities (not logits), averaged with the mirrored image when the
model was trained with ``tta_flip``, so it matches ``FERClassifier.predict_probs`` and a
deployment needs no extra code. It takes uint8 RGB images and normalises them itself, as
the model does in training; label names and input size ride in its ``metadata_props``.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.export import Dim

from fer_lightning.emotions import EMOTIONS
from fer_lightning.io import atomic_path
from fer_lightning.models.classifier import FERClassifier

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class ProbabilityModel(nn.Module):
    """``FERClassifier.predict_probs`` as a module: normalisation, backbone, softmax (flip TTA)."""

    def __init__(self, model: FERClassifier, tta_flip: bool) -> None:
        super().__init__()
        self.model = model
        self.tta_flip = tta_flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_probs(x, self.tta_flip)


def onnx_metadata(model: FERClassifier) -> dict[str, str]:
    """String metadata: what the input must look like and what the outputs mean."""
    return {
        "labels": json.dumps(list(EMOTIONS)),
        "image_size": str(model.hparams.image_size),
        "input": "uint8 NCHW RGB (0..255), resized to image_size; normalised inside the graph",
        "output": "softmax probabilities, one column per label",
        "backbone": model.hparams.backbone,
        "tta_flip": str(bool(model.hparams.get("tta_flip", False))).lower(),
    }


def export_onnx(model: FERClassifier, output: str | Path, opset: int | None = None) -> Path:
    """Write ``model`` as ONNX to ``output`` (atomically, one self-contained file).

    Uses the dynamo exporter (torch's default), which needs ``onnxscript``; the batch
    axis is dynamic, height and width are fixed at the training size.
    """
    image_size = model.hparams.image_size
    if not image_size:
        raise ValueError("the checkpoint records no training image size (hparams.image_size)")
    wrapper = ProbabilityModel(model, bool(model.hparams.get("tta_flip", False))).eval()
    # batch 2: an example batch of 1 would specialise the batch axis
    example = torch.zeros(2, 3, image_size, image_size, dtype=torch.uint8)
    program = torch.onnx.export(
        wrapper.cpu(),
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_shapes={"x": {0: Dim("batch")}},
        external_data=False,
        dynamo=True,
        verbose=False,
    )
    proto = program.model_proto
    props = {p.key: p.value for p in proto.metadata_props} | onnx_metadata(model)
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    output = Path(output)
    with atomic_path(output) as tmp:
        onnx.save_model(proto, tmp)
    return output
