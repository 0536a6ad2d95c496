"""Loading fer_lightning checkpoints: weights-only, and refusing other files clearly.

A checkpoint is checked before Lightning sees it: a plain state dict, another module's
checkpoint or another backbone would otherwise fail deep inside ``load_state_dict``.
Inference (``fer-eval``, ``fer-predict``, ``fer-export``, the pseudo-label pass) rebuilds
the network from what the checkpoint says about it (timm name, input size, labels), never
from the LightningModule class that trained it, so a subclass with its own training step
or init arguments needs nothing here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import CheckpointError
from fer_lightning.models.classifier import INFERENCE_KEY, FERClassifier


def _not_ours(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a fer_lightning FERClassifier checkpoint ({why}); "
        "pass a checkpoint written by fer-train, e.g. <run>/round_0/checkpoints/best.ckpt"
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (weights-only), after checking that it is a FERClassifier's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip or weights_only errors: all mean "not ours"
        raise _not_ours(path, f"cannot be read as a weights-only checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise _not_ours(path, "no Lightning 'state_dict' entry")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or "backbone" not in hparams:
        raise _not_ours(path, "no FERClassifier hyper-parameters")
    if not any(key.startswith("net.") for key in ckpt["state_dict"]):
        raise _not_ours(path, "its weights are not a FERClassifier's 'net.*' backbone")
    return ckpt


def inference_record(ckpt: dict[str, Any]) -> dict[str, Any]:
    """How to feed the checkpoint's network: its own record, or (checkpoints written before
    the record existed) the FERClassifier hyper-parameters that hold the same."""
    record = ckpt.get(INFERENCE_KEY)
    if record is None:
        hparams = ckpt["hyper_parameters"]
        return {"backbone": hparams["backbone"], "image_size": hparams.get("image_size")}
    return record


def load_classifier(path: str | Path) -> FERClassifier:
    """An inference model on CPU in eval mode: the checkpoint's network (``net.*``) in a
    FERClassifier built from its inference record, whatever module trained it."""
    ckpt = read_checkpoint(path)
    record = inference_record(ckpt)
    labels = record.get("labels", list(EMOTIONS))
    if list(labels) != list(EMOTIONS):
        raise _not_ours(Path(path), f"its labels {labels} are not {list(EMOTIONS)}")
    net = {key: value for key, value in ckpt["state_dict"].items() if key.startswith("net.")}
    try:
        model = FERClassifier(
            backbone=record["backbone"], image_size=record.get("image_size"), weights=None
        )
        model.load_state_dict(net)
    except (RuntimeError, TypeError, ValueError, KeyError) as err:
        raise _not_ours(Path(path), f"loading failed: {err}") from err
    return model.eval()


def check_compatible(path: str | Path, model: FERClassifier) -> None:
    """Refuse to continue ``model``'s fit from a checkpoint of another backbone or class count."""
    ckpt = read_checkpoint(path)
    backbone = ckpt["hyper_parameters"]["backbone"]
    if backbone != model.hparams.backbone:
        raise CheckpointError(
            f"ckpt_path={path} holds a {backbone!r} model; this run builds "
            f"{model.hparams.backbone!r} (set model.backbone={backbone} or use another file)"
        )
    head = model.net.pretrained_cfg.get("classifier", "classifier")
    weight = ckpt["state_dict"].get(f"net.{head}.weight")
    if weight is not None and weight.shape[0] != NUM_CLASSES:
        raise CheckpointError(
            f"ckpt_path={path} has {weight.shape[0]} output classes; "
            f"fer_lightning models have {NUM_CLASSES}"
        )


def load_weights(model: FERClassifier, path: str | Path) -> None:
    """Put a checkpoint's weights into ``model`` (on its device): a round's best, a teacher."""
    state = read_checkpoint(path)["state_dict"]
    model.load_state_dict({k: v.to(model.device) for k, v in state.items()})
