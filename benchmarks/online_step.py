"""What an online step costs: FixMatch's step against a supervised one, side by side.

Both are ``Trainer.fit`` as ``fer-train`` builds it (the config's model, callbacks and
FERDataModule: files decoded and augmented in the DataLoader workers), validation off, the
first batches untimed. Printed per resolution: labeled faces/s and images through the
network/s of each side (an online step runs B labeled faces and 2·mu·B pool views), the
cost of one step relative to a supervised step, what the workers spend per face on the
weak and the strong view (RandAugment + cutout), and the bytes each step moves across the
worker queue. The sides alternate ``--repeats`` times; medians (range in brackets).

    .venv/bin/python benchmarks/online_step.py [--sizes 64] [--mu 2] [fer-train overrides]
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from lightning_utilities.core.apply_func import apply_to_collection

from fer_lightning.data.images import read_rgb
from fer_lightning.data.transforms import strong_transform, weak_transform
from fer_lightning.run_dir import RunDir
from fer_lightning.training import build_callbacks, build_loggers

from harness import (
    WARMUP_BATCHES,
    alternate,
    build,
    compose_run,
    median,
    parser,
    ratio,
    synchronize,
    table,
    workdir,
)


class Rate(pl.Callback):
    """Labeled faces/s, network images/s and bytes per step after ``WARMUP_BATCHES``."""

    def __init__(self) -> None:
        self.start, self.labeled, self.images, self.bytes, self.steps = 0.0, 0, 0, 0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == WARMUP_BATCHES:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        if trainer.global_step < WARMUP_BATCHES:
            return
        labeled = batch["labeled"] if isinstance(batch, dict) else batch
        self.labeled += len(labeled[0])
        sizes: list[int] = []
        apply_to_collection(batch, torch.Tensor, lambda t: sizes.append((t.ndim, len(t), t.nbytes)))
        self.images += sum(n for ndim, n, _ in sizes if ndim == 4)
        self.bytes += sum(b for *_, b in sizes)
        self.steps += 1

    def on_fit_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.seconds = time.perf_counter() - self.start


def fit(cfg, tmp: Path, tag: str, steps: int) -> Rate:
    datamodule, model = build(cfg)
    rate = Rate()
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, RunDir(tmp / tag), 0, [rate]),
        logger=build_loggers(cfg, RunDir(tmp / tag), 0) or False,
        max_epochs=-1,
        max_steps=WARMUP_BATCHES + steps,
        limit_val_batches=0,
        enable_progress_bar=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return rate


def per_face_ms(cfg, transform_of, faces: int = 64) -> float:
    """Milliseconds a worker spends on one face's view (decode excluded)."""
    datamodule, _ = build(cfg)
    size = datamodule.work_size()
    images = [read_rgb(str(p)) for p in datamodule.splits.unlabeled.paths[:faces]]
    transform = transform_of(size)
    start = time.perf_counter()
    for i, image in enumerate(images):
        transform.set_random_state(np.random.default_rng(i), random.Random(i))
        transform(image=image)
    return 1000 * (time.perf_counter() - start) / len(images)


def measure(size: int, mu: int, steps: int, repeats: int, tiny: bool, overrides: list[str]):
    with workdir() as name:
        tmp = Path(name)
        base = [f"data.image_size={size}", *overrides]
        supervised = compose_run(base, tiny, tmp)
        online = compose_run(["method=fixmatch", f"model.mu={mu}", *base], tiny, tmp)
        runs = alternate(
            {
                "supervised": lambda: fit(supervised, tmp, "supervised", steps),
                "fixmatch": lambda: fit(online, tmp, "fixmatch", steps),
            },
            repeats,
        )
        weak, strong = (per_face_ms(supervised, t) for t in (weak_transform, strong_transform))
    faces = {side: [r.labeled / r.seconds for r in rs] for side, rs in runs.items()}
    images = {side: [r.images / r.seconds for r in rs] for side, rs in runs.items()}
    step_cost = ratio(faces["supervised"], faces["fixmatch"])  # time per step, online / supervised
    kib = {side: rs[0].bytes / rs[0].steps / 1024 for side, rs in runs.items()}
    return [
        size,
        mu,
        median(faces["supervised"]),
        median(faces["fixmatch"]),
        median(images["supervised"]),
        median(images["fixmatch"]),
        step_cost,
        f"{weak:.2f}",
        f"{strong:.2f}",
        f"{kib['supervised']:.0f}",
        f"{kib['fixmatch']:.0f}",
    ]


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, epochs=False)
    p.add_argument("--mu", type=int, default=2, help="pool faces per labeled face")
    p.add_argument("--steps", type=int, default=20, help="timed steps per side")
    args = p.parse_args(argv)
    sizes = [32] if args.tiny else [int(s) for s in args.sizes.split(",")]
    steps, repeats = (2, 1) if args.tiny else (args.steps, args.repeats)
    rows = [measure(s, args.mu, steps, repeats, args.tiny, args.overrides) for s in sizes]
    print(f"Online step vs supervised step ({steps} timed steps, medians of {repeats} "
          f"alternations), overrides: {args.overrides}")  # fmt: skip
    header = ["size", "mu", "sup faces/s", "fixmatch faces/s", "sup images/s",
              "fixmatch images/s", "step cost", "weak ms/face", "strong ms/face",
              "sup KiB/step", "fixmatch KiB/step"]  # fmt: skip
    print(table(header, rows))
    print("step cost: an online step's time over a supervised step's (labeled faces/s ratio)")


if __name__ == "__main__":
    main()
