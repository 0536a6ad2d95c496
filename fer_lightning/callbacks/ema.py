"""EMA: an exponential moving average of the weights, the model that is validated and kept.

Lightning's ``WeightAveraging`` does the work: validation runs on the average, checkpoints
hold it as their ``state_dict`` (so ``fer-eval``, ``fer-predict``, ``fer-export`` and the
pseudo-label pass read the average with no special case) and keep the live weights beside
it, and a resumed fit restores both exactly. Two changes: a warm-up, and a test or
prediction run that reads a checkpoint uses its average as it stands.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from torch.optim.swa_utils import AveragedModel


def warmup_ema(decay: float):
    """``multi_avg_fn`` for :class:`AveragedModel`: EMA whose decay warms up as timm's does.

    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates: with 0.999 from the first step a
    run of a few hundred steps would keep mostly its initial weights; FixMatch's million
    steps never notice the warm-up.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor):
        steps = float(n)
        rate = 1.0 - min(decay, (1.0 + steps) / (10.0 + steps))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, rate)
        else:  # integer buffers (batch-norm step counts): follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


class EMA(WeightAveraging):
    """The weights' exponential moving average (``decay`` 0.999 by default, FixMatch's)."""

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}")
        super().__init__(use_buffers=True, multi_avg_fn=warmup_ema(decay))
        self.decay = decay

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # the base class also calls configure_model, warning about sharding; ours only moves
        # memory formats and has already run
        if stage == "fit":
            device = self._device or pl_module.device
            self._average_model = AveragedModel(
                model=pl_module, device=device, use_buffers=self._use_buffers, **self._kwargs
            )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._average_model = None

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # testing a checkpoint: its state_dict is the average, already loaded; the base class
        # would put the live weights back (or warn that it cannot)
        if trainer.state.fn == TrainerFn.FITTING and self._average_model is not None:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
