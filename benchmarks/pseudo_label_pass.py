"""Pseudo-labeling pass: the callback's prediction over the pool vs bare model(x), side by side.

  bare      softmax(model(x)) over the pool pre-loaded as tensors (decoded + resized once);
  callback  ``predict_probs`` as the pseudo-label callback runs it: image files through
            the DataModule's loader and workers, under the trainer's precision;
  tta       the same with flip test-time augmentation (two forward passes), for reference.
Each side runs once untimed first (warm-up), then timed.

    .venv/bin/python benchmarks/pseudo_label_pass.py [--sizes 64,224] [fer-train overrides]
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from fer_lightning.callbacks.pseudo_label import predict_probs

from harness import (
    build,
    compose_run,
    device_and_autocast,
    parser,
    preload,
    synchronize,
    table,
    workdir,
)

GOAL = 0.90


def timed(fn) -> float:
    """Seconds of ``fn()`` after one untimed warm-up call."""
    fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(size: int, tiny: bool, overrides: list[str]) -> list[object]:
    with workdir() as tmp_name:
        cfg = compose_run([f"data.image_size={size}", *overrides], tiny, Path(tmp_name))
        datamodule, model = build(cfg)
        paths = datamodule.unlabeled_paths()
        x = preload(datamodule, paths)
        device, autocast = device_and_autocast(cfg)
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        model.speed_up(device)  # channels_last / compile, as in a fit
        model.to(device).eval()
        net, memory_format = model.net, model.memory_format

        @torch.no_grad()
        def bare() -> None:
            for xb in x.split(datamodule.batch_size):
                with autocast:
                    xb = xb.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                    net(xb).float().softmax(-1).cpu()
            synchronize(device)

        bare_s = timed(bare)
        callback_s = timed(lambda: predict_probs(model, datamodule, paths, False, trainer))
        tta_s = timed(lambda: predict_probs(model, datamodule, paths, True, trainer))
        n = len(paths)
        ratio = f"{bare_s / callback_s:.2f}"
        return [size, n, datamodule.workers(), n / bare_s, n / callback_s, ratio, n / tta_s]


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    sizes = [32] if args.tiny else [int(s) for s in args.sizes.split(",")]
    rows = [measure(size, args.tiny, args.overrides) for size in sizes]
    print(f"Pool prediction (images/s), overrides: {args.overrides}")
    header = ["size", "pool", "workers", "bare", "callback", "ratio", "callback+tta"]
    print(table(header, rows))
    worst = min(float(r[5]) for r in rows)
    verdict = "PASS" if worst >= GOAL else "MISS"
    print(f"callback/bare ratio (lowest, no TTA): {worst:.2f} (goal >= {GOAL}: {verdict})")


if __name__ == "__main__":
    main()
