"""``fer-synth``: write the synthetic RAF-DB-layout data set to a directory."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from fer_lightning.console import rate
from fer_lightning.data.synthetic import META_FILE, generate_rafdb
from fer_lightning.emotions import EMOTIONS


def main(argv: Sequence[str] | None = None) -> None:
    """Generate the set and print per-class counts and the generation speed."""
    parser = argparse.ArgumentParser(
        prog="fer-synth",
        description="Generate the synthetic facial-expression data set in RAF-DB's layout.",
    )
    parser.add_argument("--out", required=True, help="data set root (replaced if synthetic)")
    parser.add_argument("--train", type=int, default=3000, help="training images")
    parser.add_argument("--test", type=int, default=1000, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=100, help="image side in pixels")
    parser.add_argument(
        "--label-noise", type=float, default=0.0, help="fraction of labels set to another class"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (output is identical)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        root = generate_rafdb(
            args.out,
            n_train=args.train,
            n_test=args.test,
            seed=args.seed,
            image_size=args.size,
            label_noise=args.label_noise,
            workers=args.workers,
        )
    except ValueError as e:
        parser.exit(2, f"fer-synth: error: {e}\n")
    seconds = time.perf_counter() - start

    counts = json.loads((root / META_FILE).read_text())["counts"]
    print(f"{'emotion':<10} {'train':>7} {'test':>7}")
    for name in EMOTIONS:
        print(f"{name:<10} {counts['train'][name]:>7} {counts['test'][name]:>7}")
    print(f"{'total':<10} {sum(counts['train'].values()):>7} {sum(counts['test'].values()):>7}")
    n = args.train + args.test
    print(f"wrote {root} in {seconds:.2f} s ({rate(n, seconds)} img/s)")
