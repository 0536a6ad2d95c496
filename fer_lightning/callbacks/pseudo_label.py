"""PseudoLabelCallback: at the end of a round's fit, the best checkpoint labels the pool."""

from __future__ import annotations

import logging

import pytorch_lightning as pl

from fer_lightning.models.checkpoints import load_weights
from fer_lightning.pseudo.step import PseudoLabelStep

log = logging.getLogger(__name__)


class PseudoLabelCallback(pl.Callback):
    """Turns round ``k``'s best checkpoint into the pseudo set of round ``k + 1``.

    The teacher is the round's best checkpoint (selected on validation), not its last
    epoch. Every rank predicts its share of the pool; rank 0 writes the probabilities
    and the manifest, and every rank waits for them before the fit returns.
    """

    def __init__(self, step: PseudoLabelStep, round_index: int) -> None:
        self.step = step
        self.round_index = round_index

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # rank 0's teardown has waited for its background checkpoint writes; the others wait here
        trainer.strategy.barrier("checkpoints_written")
        best = trainer.checkpoint_callback.best_model_path
        if best:
            load_weights(pl_module, best)
        self.step.produce(self.round_index, trainer.datamodule, pl_module, trainer)
        trainer.strategy.barrier("pseudo_labels_written")
