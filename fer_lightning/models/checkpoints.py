"""Loading FERClassifier checkpoints: weights-only, and refusing other files clearly.

A checkpoint is checked before Lightning sees it: a plain state dict, another module's
checkpoint or another backbone would otherwise fail deep inside ``load_state_dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fer_lightning.emotions import NUM_CLASSES
from fer_lightning.errors import CheckpointError
from fer_lightning.models.classifier import FERClassifier


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


def load_classifier(path: str | Path) -> FERClassifier:
    """A FERClassifier on CPU in eval mode, rebuilt from the checkpoint's hyper-parameters."""
    read_checkpoint(path)
    try:
        model = FERClassifier.load_from_checkpoint(
            path, map_location="cpu", weights_only=True, pretrained=False, weights=None
        )
    except (RuntimeError, TypeError, ValueError) as err:
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
