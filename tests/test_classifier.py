"""FERClassifier: transfer-learning schedule and a checkpoint that loads with weights_only."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from fer_lightning.models.backbones import backbone_mean_std
from fer_lightning.models.classifier import FERClassifier


class Snapshots(pl.Callback):
    """Copies of one backbone and one head tensor at the end of every training epoch."""

    def __init__(self) -> None:
        self.backbone: list[torch.Tensor] = []
        self.head: list[torch.Tensor] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        self.backbone.append(module.net.conv_stem.weight.detach().clone())
        self.head.append(module.net.get_classifier().weight.detach().clone())


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.nn.functional.one_hot(torch.arange(16) % 7, 7).float()
    return DataLoader(TensorDataset(x, y, torch.ones(16)), batch_size=8)


def test_backbone_frozen_for_the_first_epochs_then_fine_tuned(tmp_path):
    model = FERClassifier(freeze_backbone_epochs=1, scheduler=None, drop_rate=0.0)
    before = model.net.conv_stem.weight.detach().clone()
    head_before = model.net.get_classifier().weight.detach().clone()
    snaps = Snapshots()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[snaps],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, train_dataloaders=_loader())
    assert torch.equal(snaps.backbone[0], before)  # epoch 0: head only
    assert not torch.equal(snaps.head[0], head_before)  # epoch 0: the head learns
    assert not torch.equal(snaps.backbone[1], before)  # epoch 1: everything trains
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert state["hyper_parameters"]["freeze_backbone_epochs"] == 1
    loaded = FERClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(loaded.net.conv_stem.weight, model.net.conv_stem.weight)


def test_flip_tta_averages_the_mirrored_face():
    model = FERClassifier(drop_rate=0.0).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    both = (model.predict_probs(x) + model.predict_probs(x.flip(-1))) / 2
    torch.testing.assert_close(model.predict_probs(x, flip=True), both)


def test_model_normalises_uint8_images_like_albumentations_and_keeps_the_layout():
    """Normalisation moved from the workers into the model: same numbers, any memory format."""
    model = FERClassifier(backbone="efficientnet_b0", drop_rate=0.0)  # ImageNet mean/std
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mean, std = backbone_mean_std("efficientnet_b0")
    expected = A.Normalize(mean=mean, std=std)(image=image)["image"].transpose(2, 0, 1)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    torch.testing.assert_close(model.normalize(x)[0], torch.from_numpy(expected))
    model.memory_format = torch.channels_last
    assert model.normalize(x).is_contiguous(memory_format=torch.channels_last)
