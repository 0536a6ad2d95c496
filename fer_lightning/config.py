"""The config schema of ``fer-train``: every group checked before anything is written.

A wrong value fails in a second with a message that names the key, not after the
teacher has trained (or as a library's traceback). The checks that belong to a
component stay with it (:class:`SelectionConfig`, the split protocol, the augmentation
options) and are called from here, so there is one entry point and one rule each.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from fer_lightning.data.splits import validate_protocol
from fer_lightning.data.transforms import check_augment
from fer_lightning.errors import ConfigError, UserError
from fer_lightning.pseudo.selection import SelectionConfig
from fer_lightning.pseudo.strategies import build_strategy

log = logging.getLogger(__name__)

STUDENT_INITS = ("pretrained", "teacher")
MIN_IMAGE_SIZE = 16  # the backbones downsample 32x: below this there is nothing left
# faces are 100 px (RAF-DB aligned) to a few hundred: beyond this a batch is absurd memory
MAX_IMAGE_SIZE = 1024
MAX_SEED = 2**32 - 1  # numpy's seed range, which seed_everything passes on


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _int(key: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        if high is not None:
            raise ConfigError(f"{key}={value!r}: must be an integer in [{low}, {high}]")
        raise ConfigError(f"{key}={value!r}: must be an integer >= {low}")
    if high is not None and value > high:
        raise ConfigError(f"{key}={value!r}: must be an integer in [{low}, {high}]")
    return value


def _fraction(key: str, value: Any, high_open: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (0 <= value < 1 if high_open else 0 <= value <= 1):
        raise ConfigError(f"{key}={value!r}: must be a number in [0, {'1)' if high_open else '1]'}")
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false")
    return value


@dataclass(frozen=True)
class PseudoLabelConfig:
    """The ``pseudo_label`` group: how rounds run, and the selection (all validated)."""

    rounds: int = 0
    student_init: str = "pretrained"
    accumulate: bool = False
    include_test: bool = False
    tta_flip: bool = True
    student_drop_rate: float | None = None
    student_augment: Mapping[str, Any] = field(default_factory=dict)
    labeled_share: float | None = None
    selection: SelectionConfig | None = None  # None when rounds == 0

    @classmethod
    def from_cfg(cls, node: Mapping | DictConfig | None) -> PseudoLabelConfig:
        """Check every key of the group; unknown keys and wrong values raise ConfigError."""
        options = dict(_plain(node) or {})
        own = {f.name for f in dataclasses.fields(cls)} - {"selection"}
        selection_keys = {f.name for f in dataclasses.fields(SelectionConfig)}
        unknown = sorted(set(options) - own - selection_keys)
        if unknown:
            valid = ", ".join(sorted(own | selection_keys))
            raise ConfigError(f"pseudo_label: unknown key(s) {unknown}; valid: {valid}")
        rounds = _int("pseudo_label.rounds", options.get("rounds", 0), 0)
        defaults = cls()
        values = {k: options.get(k, getattr(defaults, k)) for k in own}
        if values["student_init"] not in STUDENT_INITS:
            raise ConfigError(
                f"pseudo_label.student_init={values['student_init']!r}: must be one of "
                + ", ".join(STUDENT_INITS)
            )
        for name in ("accumulate", "include_test", "tta_flip"):
            _bool(f"pseudo_label.{name}", values[name])
        if values["student_drop_rate"] is not None:
            _fraction("pseudo_label.student_drop_rate", values["student_drop_rate"])
        if values["labeled_share"] is not None:
            _fraction("pseudo_label.labeled_share", values["labeled_share"])
        values["student_augment"] = dict(values["student_augment"] or {})
        check_augment(values["student_augment"], "pseudo_label.student_augment")
        selection = None
        picked = {k: v for k, v in options.items() if k in selection_keys}
        if rounds > 0 or "strategy" in picked:
            if "strategy" not in picked:
                raise ConfigError(
                    "pseudo_label.strategy: missing; pick a group (pseudo_label=balanced, "
                    "crest, threshold, ...) or give strategy._target_ and its options"
                )
            try:
                strategy = build_strategy(picked.pop("strategy"))
            except (TypeError, ValueError) as err:  # the message names pseudo_label.strategy
                raise ConfigError(str(err)) from None
            try:
                selection = SelectionConfig.from_options(strategy, **picked)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"pseudo_label: {err}") from None
        values["rounds"] = rounds
        return cls(**values, selection=selection)


def _check_data(data: Mapping[str, Any]) -> None:
    _int("data.image_size", data.get("image_size"), MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    for key in ("split_seed", "seed"):
        if key in data:
            _int(f"data.{key}", data[key], 0, MAX_SEED)
    for key in ("label_fraction", "val_fraction"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"data.{key}={value!r}: must be a number")
    if data.get("val_fraction", 0.1) == 0 and not data.get("val_split"):
        raise ConfigError(
            "data.val_fraction=0: fer-train needs a validation split to choose each round's "
            "best checkpoint (never the test set); use a fraction in (0, 1), e.g. 0.1, or name "
            "a validation split of the source with data.val_split"
        )
    _int("data.batch_size", data.get("batch_size", 1), 1)
    _int("data.min_image_side", data.get("min_image_side", 1), 1)
    try:
        budget = data.get("labels_per_class")
        if isinstance(budget, DictConfig):
            budget = OmegaConf.to_container(budget)
        validate_protocol(budget, data.get("label_fraction"), data.get("val_fraction", 0.1))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_augment(dict(data.get("augment") or {}), "data.augment")
    if data.get("augment_size") is not None:
        _int("data.augment_size", data["augment_size"], MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    limit = data.get("cache_max_gib", 4.0)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
        raise ConfigError(f"data.cache_max_gib={limit!r}: must be a number > 0")


def _check_model(model: Mapping[str, Any]) -> None:
    """The class ``model._target_`` names checks its own options (unknown keys too); the
    weights file is opened here once, before the run directory is claimed."""
    from hydra.utils import get_class

    from fer_lightning.models.backbones import check_weights
    from fer_lightning.models.classifier import FERClassifier
    from fer_lightning.models.imagenet import OFFLINE

    target = str(model.get("_target_", ""))
    try:
        cls = get_class(target)
    except Exception as err:  # Hydra's message names the missing module or attribute
        raise ConfigError(f"model._target_={target!r}: cannot be imported ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, FERClassifier)):
        raise ConfigError(
            f"model._target_={target!r}: not a FERClassifier (fer_lightning.models.classifier); "
            "a training method subclasses it (see conf/method/)"
        )
    cls.check_options(model)
    backbone = str(model.get("backbone"))
    check_weights(backbone, model.get("weights"))
    if not model.get("weights") and not model.get("pretrained"):
        log.warning(
            "NO PRETRAINED WEIGHTS: model.backbone=%s starts from random initialisation "
            "(model.pretrained=false, model.weights=null), far below ImageNet transfer. "
            "For ImageNet weights: model.pretrained=true (timm's hub: internet or the "
            "Hugging Face cache), model.weights=PATH (a local state dict), or "
            "model.weights=imagenet where an offline file exists (%s)",
            backbone,
            ", ".join(sorted(OFFLINE)),
        )


def _check_trainer(trainer: Mapping[str, Any]) -> None:
    import torch

    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if not (isinstance(steps, int) and steps > 0):
        _int("trainer.max_epochs", epochs, 1)
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator}: this machine has no CUDA device; "
            "use trainer=cpu (or trainer.accelerator=auto)"
        )


# What a study role (conf/study/) implies, over any value from the command line: a
# study's label budget given there must not leak into its ceiling, nor rounds into its
# baseline. Strategy roles only pick the pseudo_label group.
STUDY_ROLES: dict[str, dict[str, Any]] = {
    "baseline": {"pseudo_label.rounds": 0},
    "fixmatch": {"pseudo_label.rounds": 0},  # an online method alone: one fit
    "flexmatch": {"pseudo_label.rounds": 0},
    "ceiling": {
        "data.labels_per_class": None,
        "data.label_fraction": None,
        "data.unlabeled_dir": None,
        "pseudo_label.rounds": 0,
    },
}


def apply_study_role(cfg: DictConfig) -> None:
    """Set what ``cfg.study``'s role implies (in place), before anything reads the config.

    ``baseline``, ``ceiling`` and the online methods alone imply settings; any other role is
    a pseudo-label strategy or a method from ``conf/study/`` or a user's ``--config-dir``
    (Hydra finds or refuses it).
    """
    role = cfg.get("study")
    if role is None:
        return
    with open_dict(cfg):
        if role == "ceiling":  # the study's budget sizes the ceiling's schedule (rounds.py)
            budget = {k: cfg.data.get(k) for k in ("labels_per_class", "label_fraction")}
            cfg.study_budget = OmegaConf.create(budget)
        for key, value in STUDY_ROLES.get(role, {}).items():
            OmegaConf.update(cfg, key, value, force_add=True)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``instantiate``, with a user error raised inside a constructor passed on as it is
    (Hydra would wrap it in a traceback naming the target), so each rule lives in the
    object it guards and still reads as one line and exit 2."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def check_required(cfg: DictConfig, example: str = "VALUE") -> None:
    """A mandatory value (``???``) the run reads but nobody set: name it and how to set it.

    OmegaConf would stop later with its ``InterpolationToMissingValueError`` traceback;
    a ``???`` that nothing reads (a study role that drops it) passes.
    """
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (MissingMandatoryValue, InterpolationToMissingValueError) as err:
        # through an interpolation, the key to set is the one it points at
        found = re.search(r"Missing mandatory value: ([\w.]+)", str(err))
        interpolated = isinstance(err, InterpolationToMissingValueError) and found
        key = found.group(1) if interpolated else str(err.full_key)
        via = f" (read by {err.full_key})" if err.full_key and err.full_key != key else ""
        raise ConfigError(
            f"{key} has no value and this configuration needs one{via}: add {key}={example} "
            "to the command line"
        ) from None


def validate_train(cfg: DictConfig) -> PseudoLabelConfig:
    """Check the groups fer-train uses; returns the typed ``pseudo_label`` group."""
    check_required(cfg, "PATH")
    _int("seed", cfg.get("seed"), 0, MAX_SEED)
    _check_data(_plain(cfg.data))
    _check_model(_plain(cfg.model))
    _check_trainer(_plain(cfg.trainer))
    ckpt = cfg.get("ckpt_path")
    if ckpt and not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={ckpt}: file not found")
    return PseudoLabelConfig.from_cfg(cfg.get("pseudo_label"))
