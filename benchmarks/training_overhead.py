"""Training overhead: FERClassifier through Lightning vs a bare PyTorch loop, side by side.

Three fits of the same model (optimizer, schedule, loss, batch size, resolution):
  bare       a hand-written loop over pre-loaded tensors (decoded + resized once);
  lightning  Trainer.fit with our callbacks and TensorBoard logging, same tensors;
  pipeline   Trainer.fit with our FERDataModule: files decoded and augmented in workers.
Throughput counts the epochs after the first (warm-up); validation is off on all three.
lightning/bare is the framework's own cost; pipeline/bare adds the data pipeline's.

    .venv/bin/python benchmarks/training_overhead.py [--sizes 64,224] [fer-train overrides]
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset

from fer_lightning.training import _callbacks, _loggers

from harness import (
    bare_train,
    build,
    compose_run,
    device_and_autocast,
    labeled_tensors,
    parser,
    synchronize,
    table,
    workdir,
)

GOAL = 0.95


class Throughput(pl.Callback):
    """Seconds from the second epoch's start to the end of training (checkpoints included)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            synchronize(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self.seconds = time.perf_counter() - self.start


def lightning_fit(cfg: DictConfig, tmp: Path, tag: str, epochs: int, loader=None) -> float:
    """Images/s of ``Trainer.fit`` as ``fer-train`` builds it; ``loader`` replaces the data."""
    datamodule, model = build(cfg)
    timer = Throughput()
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=_callbacks(cfg, tmp / tag / "checkpoints", 0, [timer]),
        logger=_loggers(cfg, tag) or False,
        max_epochs=epochs,
        limit_val_batches=0,
        enable_progress_bar=False,
    )
    if loader is None:
        trainer.fit(model, datamodule=datamodule)
    else:
        trainer.fit(model, train_dataloaders=loader)
    return datamodule.train_size() * (epochs - 1) / timer.seconds


def measure(size: int, epochs: int, tiny: bool, overrides: list[str]) -> list[object]:
    with workdir() as tmp_name:
        tmp = Path(tmp_name)
        cfg = compose_run([f"data.image_size={size}", *overrides], tiny, tmp)
        datamodule, model = build(cfg)
        x, y = labeled_tensors(datamodule)
        device, _ = device_and_autocast(cfg)
        bare = bare_train(model, x, y, datamodule.batch_size, epochs, cfg)
        tensors = DataLoader(
            TensorDataset(x, y, y.new_ones(len(y))),
            batch_size=datamodule.batch_size,
            shuffle=True,
            pin_memory=device.type == "cuda",
        )
        with_tensors = lightning_fit(cfg, tmp, "tensors", epochs, tensors)
        pipeline = lightning_fit(cfg, tmp, "pipeline", epochs)
        workers = datamodule.workers()
    return [
        size,
        len(x),
        datamodule.batch_size,
        workers,
        bare,
        with_tensors,
        f"{with_tensors / bare:.2f}",
        pipeline,
        f"{pipeline / bare:.2f}",
    ]


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    sizes = [32] if args.tiny else [int(s) for s in args.sizes.split(",")]
    epochs = 2 if args.tiny else args.epochs
    rows = [measure(size, epochs, args.tiny, args.overrides) for size in sizes]
    print(f"Training throughput (images/s, epochs 2..{epochs}), overrides: {args.overrides}")
    header = ["size", "images", "batch", "workers", "bare", "lightning", "ratio"]
    print(table([*header, "pipeline", "ratio"], rows))
    for name, column in (("lightning", 6), ("pipeline", 8)):
        worst = min(float(r[column]) for r in rows)
        verdict = "PASS" if worst >= GOAL else "MISS"
        print(f"{name}/bare ratio (lowest): {worst:.2f} (goal >= {GOAL}: {verdict})")


if __name__ == "__main__":
    main()
