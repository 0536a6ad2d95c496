"""timm backbones: creation, ImageNet weights from the hub or a local file, normalisation."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def backbone_mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation the backbone's pretrained weights expect (ImageNet's if unknown)."""
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a timm/torch checkpoint, a Lightning checkpoint or a raw dict."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"model.weights={path}: not a state dict or a checkpoint holding one")
    state = {}
    for k, v in obj.items():
        for prefix in ("module.", "net."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        state[k] = v
    return state


def load_local_weights(model: nn.Module, path: str | Path) -> None:
    """Load backbone weights from ``path``, dropping the classifier head; log what did not match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights={path}: file not found")
    state = _state_dict_from_file(path)
    head = model.pretrained_cfg.get("classifier", "classifier")
    own = model.state_dict()
    dropped = {
        k
        for k, v in state.items()
        if k.startswith(f"{head}.") or (k in own and own[k].shape != v.shape)
    }
    state = {k: v for k, v in state.items() if k not in dropped}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(f"{head}.")]
    log.info(
        "loaded %d tensors from %s (head dropped: %d keys; missing: %d; unexpected: %d)",
        len(state),
        path,
        len(dropped),
        len(missing),
        len(result.unexpected_keys),
    )
    if missing:
        log.warning("weights %s lack %d backbone keys, e.g. %s", path, len(missing), missing[:5])
    if result.unexpected_keys:
        log.warning(
            "weights %s have %d keys the model does not, e.g. %s",
            path,
            len(result.unexpected_keys),
            result.unexpected_keys[:5],
        )
    backbone_keys = [k for k in own if not k.startswith(f"{head}.")]
    if len(missing) > len(backbone_keys) // 2:
        raise ValueError(
            f"model.weights={path}: only {len(backbone_keys) - len(missing)} of "
            f"{len(backbone_keys)} backbone tensors match "
            f"{model.pretrained_cfg.get('architecture')}; is it another model's file?"
        )


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    weights: str | None = None,
    drop_rate: float = 0.0,
) -> nn.Module:
    """A timm classifier with a fresh ``num_classes`` head.

    ``weights`` (a local file) wins over ``pretrained`` (timm's hub weights, which need
    internet or the Hugging Face cache).
    """
    if not timm.is_model(name.split(".")[0]):
        raise ValueError(f"model.backbone={name!r} is not a timm model (see timm.list_models())")
    use_hub = pretrained and not weights
    try:
        model = timm.create_model(
            name, pretrained=use_hub, num_classes=num_classes, drop_rate=drop_rate
        )
    except Exception as err:  # network, missing cache, missing file: all surface the same way
        if not use_hub:
            raise
        raise RuntimeError(
            f"could not get ImageNet weights for {name!r} from the hub ({err}). Offline? "
            "Set model.weights=PATH to a local weights file, or model.pretrained=false."
        ) from err
    if weights:
        load_local_weights(model, weights)
    return model
