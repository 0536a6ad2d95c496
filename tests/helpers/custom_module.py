"""A training class of a user's own, as a researcher would write one (tests/test_extension.py)."""

from __future__ import annotations

import torch.nn.functional as F

from fer_lightning.models.classifier import FERClassifier


class MarginClassifier(FERClassifier):
    """FERClassifier with an extra init argument and its own training step (a logit margin)."""

    def __init__(self, margin: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.margin = margin

    def training_step(self, batch, batch_idx: int):
        x, target, weight = batch
        logits = self(x) - self.margin * target  # the true class must win by `margin`
        loss = (F.cross_entropy(logits, target, reduction="none") * weight).mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss
