"""Training overhead: FERClassifier through Lightning vs a bare PyTorch loop, side by side.

Three fits of the same model (optimizer, schedule, loss, batch size, resolution):
  bare       a hand-written loop over pre-loaded tensors (decoded + resized once);
  lightning  Trainer.fit with our callbacks and TensorBoard logging, same tensors;
  pipeline   Trainer.fit with our FERDataModule: files decoded and augmented in workers.
Each side trains a fresh model for ``--epochs`` epochs, timed after its first batches;
validation is off on all three. The sides alternate ``--repeats`` times and each ratio is
the median of the per-repeat ratios (range in brackets). lightning/bare is the
framework's own cost; pipeline/bare adds the data pipeline's.

    .venv/bin/python benchmarks/training_overhead.py [--sizes 64,224] [fer-train overrides]
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset

from fer_lightning.run_dir import RunDir
from fer_lightning.training import build_callbacks, build_loggers

from harness import (
    WARMUP_BATCHES,
    alternate,
    bare_train,
    build,
    compose_run,
    device_and_autocast,
    labeled_tensors,
    median,
    parser,
    ratio,
    synchronize,
    table,
    workdir,
)

GOAL = 0.95


class Throughput(pl.Callback):
    """Images/s from the fit's ``WARMUP_BATCHES``-th batch to its end (checkpoints written)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.images = 0
        self.rate = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == WARMUP_BATCHES:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        if trainer.global_step >= WARMUP_BATCHES:
            self.images += len(batch[0])

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning's teardown: background checkpoint writes have finished
        synchronize(pl_module.device)
        self.rate = self.images / (time.perf_counter() - self.start)


def lightning_fit(cfg: DictConfig, tmp: Path, tag: str, epochs: int, loader=None) -> float:
    """Images/s of ``Trainer.fit`` as ``fer-train`` builds it; ``loader`` replaces the data."""
    datamodule, model = build(cfg)
    timer = Throughput()
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, RunDir(tmp / tag), 0, [timer]),
        logger=build_loggers(cfg, RunDir(tmp / tag), 0) or False,
        max_epochs=epochs,
        limit_val_batches=0,
        enable_progress_bar=False,
    )
    if loader is None:
        trainer.fit(model, datamodule=datamodule)
    else:
        trainer.fit(model, train_dataloaders=loader)
    return timer.rate


def measure(size: int, epochs: int, repeats: int, tiny: bool, overrides: list[str]) -> list:
    with workdir() as tmp_name:
        tmp = Path(tmp_name)
        cfg = compose_run([f"data.image_size={size}", *overrides], tiny, tmp)
        datamodule, _ = build(cfg)
        x, y = labeled_tensors(datamodule)
        device, _ = device_and_autocast(cfg)
        tensors = DataLoader(
            TensorDataset(x, y, y.new_ones(len(y))),
            batch_size=datamodule.batch_size,
            shuffle=True,
            pin_memory=device.type == "cuda",
        )
        rates = alternate(
            {
                "bare": lambda: bare_train(build(cfg)[1], x, y, datamodule.batch_size, epochs, cfg),
                "lightning": lambda: lightning_fit(cfg, tmp, "tensors", epochs, tensors),
                "pipeline": lambda: lightning_fit(cfg, tmp, "pipeline", epochs),
            },
            repeats,
        )
        workers = datamodule.workers()
    bare = rates["bare"]
    return [
        size,
        len(x),
        datamodule.batch_size,
        workers,
        median(bare),
        median(rates["lightning"]),
        ratio(rates["lightning"], bare),
        median(rates["pipeline"]),
        ratio(rates["pipeline"], bare),
    ]


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    sizes = [32] if args.tiny else [int(s) for s in args.sizes.split(",")]
    repeats = 1 if args.tiny else args.repeats
    rows = [measure(size, args.epochs, repeats, args.tiny, args.overrides) for size in sizes]
    print(
        f"Training throughput (images/s, medians of {repeats} alternations, "
        f"{args.epochs} epochs each), overrides: {args.overrides}"
    )
    header = ["size", "images", "batch", "workers", "bare", "lightning", "ratio"]
    print(table([*header, "pipeline", "ratio"], rows))
    for name, column in (("lightning", 6), ("pipeline", 8)):
        worst = min(float(r[column].split()[0]) for r in rows)
        verdict = "PASS" if worst >= GOAL else "MISS"
        print(f"{name}/bare ratio (lowest median): {worst:.2f} (goal >= {GOAL}: {verdict})")


if __name__ == "__main__":
    main()
