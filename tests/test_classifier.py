"""FERClassifier: transfer-learning schedule and a checkpoint that loads with weights_only."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

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
    x = torch.randn(16, 3, 32, 32, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(16) % 7, 7).float()
    return DataLoader(TensorDataset(x, y, torch.ones(16)), batch_size=8)


def test_backbone_frozen_for_the_first_epochs_then_fine_tuned(tmp_path):
    model = FERClassifier(freeze_backbone_epochs=1, scheduler=None, drop_rate=0.0)
    before = model.net.conv_stem.weight.detach().clone()
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
    assert not torch.equal(snaps.head[0], model.net.get_classifier().weight.new_zeros(1))
    assert not torch.equal(snaps.backbone[1], before)  # epoch 1: everything trains
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert state["hyper_parameters"]["freeze_backbone_epochs"] == 1
    loaded = FERClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(loaded.net.conv_stem.weight, model.net.conv_stem.weight)


def test_flip_tta_averages_the_mirrored_face():
    model = FERClassifier(drop_rate=0.0).eval()
    x = torch.randn(2, 3, 32, 32)
    both = (model.predict_probs(x) + model.predict_probs(x.flip(-1))) / 2
    torch.testing.assert_close(model.predict_probs(x, flip=True), both)
