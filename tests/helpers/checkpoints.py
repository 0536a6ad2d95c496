"""Tiny FERClassifier checkpoints written through the real Lightning loop (no data set)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from fer_lightning.emotions import EMOTIONS
from fer_lightning.models.classifier import FERClassifier


def fit_and_save(module: pl.LightningModule, path: Path, batch: tuple[torch.Tensor, ...]) -> Path:
    """One optimiser step through the real Lightning loop, then a real checkpoint."""
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(TensorDataset(*batch), batch_size=len(batch[0])))
    trainer.save_checkpoint(path)
    return path


# timm's own test network: a real EfficientNet graph small enough to export in seconds
# (MobileNet V1 took 23 s through the ONNX exporter on the 2-core VM, this 6 s)
TINY_BACKBONE = "test_efficientnet"


def make_checkpoint(path: Path) -> Path:
    """A tiny FERClassifier (32 px, :data:`TINY_BACKBONE`) checkpoint."""
    targets = torch.eye(len(EMOTIONS))[torch.arange(4) % len(EMOTIONS)]
    batch = (torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), targets, torch.ones(4))
    module = FERClassifier(backbone=TINY_BACKBONE, image_size=32)
    # outputs that depend on the input, so that comparisons of two pipelines (ONNX,
    # fer-predict, resizes) can tell them apart: a random head (the real one starts at
    # zero) on features normalised by the batch's own statistics (BN's cumulative mean)
    torch.nn.init.normal_(module.net.get_classifier().weight, std=0.02)
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.momentum = None
    return fit_and_save(module, path, batch)
