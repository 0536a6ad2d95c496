"""Data pipeline: train-loader images/s per worker vs the model's consumption, side by side.

  loader       the FERDataModule train loader alone (decode + albumentations in workers,
               collate, persistent workers), epochs after the first;
  consumption  images/s a bare training loop eats at the same settings (pre-loaded tensors);
  decode/aug   one process: share of per-image time spent decoding the file vs augmenting.
The loader must not be the bottleneck: goal >= 2x the consumption at the default workers.

A second table sets the augmentation at the model's input size (before: crop to 224 px
first, augment 224 px images) against the faces' own size (after: augment at 100 px, the
model resizes on the device): 1-worker loader images/s, alternating, and the bytes of
one batch crossing the worker queue. Goal: after >= 3x before at 224 px.

    .venv/bin/python benchmarks/data_pipeline.py [--sizes 64,224] [fer-train overrides]
"""

from __future__ import annotations

import time
from pathlib import Path

from fer_lightning.data.images import read_rgb
from fer_lightning.data.transforms import train_transform

from harness import (
    alternate,
    bare_train,
    build,
    compose_run,
    labeled_tensors,
    median,
    parser,
    ratio,
    table,
    workdir,
)

GOAL = 2.0
SOURCE_GOAL = 3.0


def loader_rate(datamodule, workers: int, epochs: int) -> float:
    """Images/s of the train loader with ``workers`` workers, epochs after the first."""
    datamodule.num_workers = workers
    loader = datamodule.train_dataloader()
    start, images = 0.0, 0
    for epoch in range(epochs):
        if epoch == 1:
            start = time.perf_counter()
        for x, _, _ in loader:
            images += len(x) if epoch else 0
    return images / (time.perf_counter() - start)


def decode_aug_split(datamodule, paths) -> tuple[float, float]:
    """Seconds per image spent decoding and augmenting (train pipeline), in this process."""
    transform = train_transform(datamodule.work_size(), **datamodule.augment)
    start = time.perf_counter()
    images = [read_rgb(str(p)) for p in paths]
    decode = time.perf_counter() - start
    start = time.perf_counter()
    for image in images:
        transform(image=image)
    return decode / len(paths), (time.perf_counter() - start) / len(paths)


def before_after(size: int, epochs: int, repeats: int, tiny: bool, overrides: list[str]) -> list:
    """1-worker loader images/s augmenting at ``size`` (before) vs at the faces' own size."""
    with workdir() as tmp_name:
        cfg = compose_run([f"data.image_size={size}", *overrides], tiny, Path(tmp_name))
        datamodule, _ = build(cfg)

        def rate(augment_size: int | None) -> float:
            datamodule.augment_size = augment_size
            return loader_rate(datamodule, 1, epochs)

        rates = alternate({"before": lambda: rate(size), "after": lambda: rate(None)}, repeats)
        work = datamodule.work_size()
    batch = datamodule.batch_size * 3
    return [
        size,
        f"{size} -> {work}",
        median(rates["before"]),
        median(rates["after"]),
        ratio(rates["after"], rates["before"]),
        f"{batch * size * size / 2**10:.0f} -> {batch * work * work / 2**10:.0f}",
    ]


def measure(size: int, epochs: int, tiny: bool, overrides: list[str]) -> list[object]:
    with workdir() as tmp_name:
        cfg = compose_run([f"data.image_size={size}", *overrides], tiny, Path(tmp_name))
        datamodule, model = build(cfg)
        default_workers = datamodule.workers()
        decode, aug = decode_aug_split(datamodule, datamodule.splits.labeled.paths)
        rates = {w: loader_rate(datamodule, w, epochs) for w in sorted({1, 2, default_workers})}
        x, y = labeled_tensors(datamodule)
        consumption = bare_train(model, x, y, datamodule.batch_size, epochs, cfg)
    share = 100 * decode / (decode + aug)
    default = rates[default_workers]
    return [
        size,
        default_workers,
        *(rates.get(w, float("nan")) for w in (1, 2)),
        rates[1],  # per worker
        consumption,
        f"{default / consumption:.2f}",
        f"{share:.0f} / {100 - share:.0f}",
    ]


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    sizes = [32] if args.tiny else [int(s) for s in args.sizes.split(",")]
    epochs = 2 if args.tiny else args.epochs
    repeats = 1 if args.tiny else args.repeats
    changes = [before_after(s, epochs, repeats, args.tiny, args.overrides) for s in sizes]
    rows = [measure(size, epochs, args.tiny, args.overrides) for size in sizes]
    print(f"Train loader vs training consumption (images/s), overrides: {args.overrides}")
    header = ["size", "default workers", "loader 1w", "loader 2w", "per worker"]
    print(table([*header, "consumption", "ratio", "decode / aug %"], rows))
    worst = min(float(r[6]) for r in rows)
    verdict = "PASS" if worst >= GOAL else "MISS"
    print(f"loader/consumption (lowest, default workers): {worst:.2f} (goal >= {GOAL}: {verdict})")
    print("\nAugmentation at the model's size (before) vs at the faces' own size (after):")
    header = ["size", "augment px", "before 1w", "after 1w", "after/before", "KiB per batch"]
    print(table(header, changes))
    largest = changes[-1]
    gain = float(str(largest[4]).split()[0])
    verdict = "PASS" if gain >= SOURCE_GOAL else "MISS"
    print(f"after/before at {largest[0]} px: {gain:.2f} (goal >= {SOURCE_GOAL}: {verdict})")


if __name__ == "__main__":
    main()
