"""Settings that depend on the machine: mixed precision and DataLoader workers.

They are resolved where the job runs (not where it was configured), so a saved config
resumed on another machine picks that machine's best settings.
"""

from __future__ import annotations

import logging
import os
from functools import cache

import torch
from omegaconf import OmegaConf

from fer_lightning.errors import ConfigError

log = logging.getLogger(__name__)

MAX_WORKERS = 8  # beyond this, decoding 100-px faces is no longer what limits a GPU


@cache
def _warn(message: str) -> None:
    log.warning(message)  # once per process: configs are resolved many times


def mixed_precision(accelerator: str = "auto") -> str:
    """bf16-mixed where the GPU supports it (Ampere and later), else 16-mixed.

    Without a CUDA device (or with ``accelerator=cpu``) it falls back to ``32-true``
    with a warning, so ``trainer=gpu`` runs anywhere and leaves CPU results unchanged.
    """
    if str(accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    _warn(
        f"trainer.precision: no CUDA device for accelerator={accelerator!r}; mixed "
        "precision falls back to 32-true (set trainer.precision to force one)"
    )
    return "32-true"


def usable_cpus() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_workers(on_gpu: bool, processes: int = 1) -> int:
    """DataLoader workers per training process when ``data.num_workers=auto``.

    On a GPU the main process mostly waits for the device, so each process gets its
    share of the cores less one, up to ``MAX_WORKERS``. On CPU the model's threads
    already occupy every core: a worker can only take turns with them, which costs more
    than loading in the main process (2 cores, 64 px: pool prediction at 0.92 of a bare
    loop on pre-loaded tensors with 0 workers, 0.88 with 1; training the same), so 0.
    """
    if not on_gpu:
        return 0
    return max(1, min(MAX_WORKERS, usable_cpus() // max(1, processes) - 1))


def register_resolvers() -> None:
    """``${fer.mixed_precision:${.accelerator}}`` for the trainer configs."""
    OmegaConf.register_new_resolver("fer.mixed_precision", mixed_precision, replace=True)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device={device}: {err}; use device=auto, cpu or cuda") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: this machine has no CUDA device; use device=auto")
    return chosen
