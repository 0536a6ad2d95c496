"""Pseudo-labeling pass: the callback's prediction over the pool vs bare model(x), side by side.

  bare      softmax(model(x)) over the pool pre-loaded as tensors (decoded + resized once);
  callback  ``predict_files_probs`` as the pseudo-label callback runs it: image files through
            the DataModule's loader and workers, under the trainer's precision;
  tta       the same with flip test-time augmentation (two forward passes), for reference.
Each side first runs untimed over a few batches (warm-up); bare and callback then
alternate ``--repeats`` times, and the ratio is the median of the per-repeat ratios
(range in brackets); tta runs once.

    .venv/bin/python benchmarks/pseudo_label_pass.py [--sizes 64,224] [fer-train overrides]
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from fer_lightning.pseudo.step import predict_files_probs

from harness import (
    WARMUP_BATCHES,
    alternate,
    build,
    compose_run,
    device_and_autocast,
    median,
    parser,
    preload,
    ratio,
    synchronize,
    table,
    workdir,
)

GOAL = 0.90


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(size: int, repeats: int, tiny: bool, overrides: list[str]) -> list[object]:
    with workdir() as tmp_name:
        cfg = compose_run([f"data.image_size={size}", *overrides], tiny, Path(tmp_name))
        datamodule, model = build(cfg)
        paths = datamodule.pool().paths
        x = preload(datamodule, paths)
        device, autocast = device_and_autocast(cfg)
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        model.speed_up(device)  # channels_last / compile, as in a fit
        model.to(device).eval()

        @torch.no_grad()
        def bare(x: torch.Tensor = x) -> None:
            for xb in x.split(datamodule.batch_size):
                with autocast:
                    model(xb.to(device, non_blocking=True)).float().softmax(-1).cpu()
            synchronize(device)

        def callback(paths=paths, flip: bool = False) -> None:
            predict_files_probs(model, datamodule, paths, flip, trainer)

        warmup = WARMUP_BATCHES * datamodule.batch_size
        bare(x[:warmup])
        callback(paths[:warmup])
        times = alternate(
            {"bare": lambda: seconds(bare), "callback": lambda: seconds(callback)}, repeats
        )
        tta_s = seconds(lambda: callback(flip=True))
        n = len(paths)
        bare_rate = [n / t for t in times["bare"]]
        callback_rate = [n / t for t in times["callback"]]
        return [
            size,
            n,
            datamodule.workers(),
            median(bare_rate),
            median(callback_rate),
            ratio(callback_rate, bare_rate),
            n / tta_s,
        ]


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, epochs=False).parse_args(argv)
    sizes = [32] if args.tiny else [int(s) for s in args.sizes.split(",")]
    repeats = 1 if args.tiny else args.repeats
    rows = [measure(size, repeats, args.tiny, args.overrides) for size in sizes]
    print(
        f"Pool prediction (images/s, medians of {repeats} alternations), "
        f"overrides: {args.overrides}"
    )
    header = ["size", "pool", "workers", "bare", "callback", "ratio", "callback+tta"]
    print(table(header, rows))
    worst = min(float(r[5].split()[0]) for r in rows)
    verdict = "PASS" if worst >= GOAL else "MISS"
    print(f"callback/bare ratio (lowest median, no TTA): {worst:.2f} (goal >= {GOAL}: {verdict})")


if __name__ == "__main__":
    main()
