"""ONNX export of a FERClassifier: softmax probabilities, dynamic batch, self-describing.

The graph outputs probabilities (not logits), averaged with the mirrored image when
exported with ``tta_flip``, so it matches ``FERClassifier.predict_probs`` and a
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
from fer_lightning.resize import resize

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class ProbabilityModel(nn.Module):
    """``FERClassifier.predict_probs`` as a module: normalisation, backbone, softmax (flip TTA)."""

    def __init__(self, model: FERClassifier, tta_flip: bool) -> None:
        super().__init__()
        self.model = model
        self.tta_flip = tta_flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # resized here unconditionally (to the size it may already have): the graph then
        # holds one resize for any input size instead of a branch on a dynamic shape; the
        # same resize as the model's in training, fer-eval and fer-predict, so a face of
        # any size gives the probabilities fer-predict gives
        size = self.model.hparams.image_size
        return self.model.predict_probs(resize(x.float(), size), self.tta_flip)


def onnx_metadata(model: FERClassifier, tta_flip: bool = False) -> dict[str, str]:
    """String metadata: what the input must look like and what the outputs mean."""
    return {
        "labels": json.dumps(list(EMOTIONS)),
        "image_size": str(model.hparams.image_size),
        "input": "uint8 NCHW RGB (0..255), any size; resized to image_size and normalised inside",
        "output": "softmax probabilities, one column per label",
        "backbone": model.hparams.backbone,
        "tta_flip": str(bool(tta_flip)).lower(),
    }


def export_onnx(
    model: FERClassifier, output: str | Path, opset: int | None = None, tta_flip: bool = False
) -> Path:
    """Write ``model`` as ONNX to ``output`` (atomically, one self-contained file).

    Uses the dynamo exporter (torch's default), which needs ``onnxscript``; the batch
    and image axes are dynamic: the graph resizes to the training size as the model does
    (a face at its native 100 px, or already at the training size). ``tta_flip``
    averages each face with its mirror image inside the graph (twice the compute).
    """
    image_size = model.hparams.image_size
    if not image_size:
        raise ValueError("the checkpoint records no training image size (hparams.image_size)")
    wrapper = ProbabilityModel(model, tta_flip).eval()
    # batch 2: an example batch of 1 would specialise the batch axis
    example = torch.zeros(2, 3, image_size, image_size, dtype=torch.uint8)
    program = torch.onnx.export(
        wrapper.cpu(),
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_shapes={"x": {0: Dim("batch"), 2: Dim("height", min=8), 3: Dim("width", min=8)}},
        external_data=False,
        dynamo=True,
        verbose=False,
    )
    proto = program.model_proto
    props = {p.key: p.value for p in proto.metadata_props} | onnx_metadata(model, tta_flip)
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    output = Path(output)
    with atomic_path(output) as tmp:
        onnx.save_model(proto, tmp)
    return output
