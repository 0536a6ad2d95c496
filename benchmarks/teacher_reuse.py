"""Teacher reuse: a 3-threshold sweep with the teacher cache vs without, side by side.

Both sweeps run the same jobs (fresh log dirs, the same synthetic data); without the
cache every job trains its own teacher. Both run in this process, as ``fer-train -m``
does its jobs (Hydra's basic launcher), so neither pays for starting Python and
importing torch. Prints each wall time and the ratio.

    .venv/bin/python benchmarks/teacher_reuse.py [--tiny] [extra fer-train overrides...]
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from fer_lightning.cli.train import main as fer_train

from harness import REPO, TINY, parser

THRESHOLDS = "0.8,0.9,0.95"


def run(args: list[str]) -> None:
    """``fer-train args`` in this process, its output discarded; a failure raises."""
    argv = sys.argv
    sys.argv = ["fer-train", *args]
    logging.disable(logging.INFO)  # Lightning's handlers hold the real stderr
    try:
        with (
            open(os.devnull, "w") as null,
            contextlib.redirect_stdout(null),
            contextlib.redirect_stderr(null),
        ):
            fer_train()
    except SystemExit as e:
        if e.code not in (0, None):
            raise RuntimeError(f"fer-train {' '.join(args)} failed ({e.code})") from e
    finally:
        sys.argv = argv
        logging.disable(logging.NOTSET)


def sweep(log_dir: Path, cache: bool, extra: list[str], thresholds: str = THRESHOLDS) -> float:
    """Wall time of one ``fer-train -m`` threshold sweep."""
    args = [
        "-m",
        "pseudo_label=threshold",
        f"pseudo_label.strategy.threshold={thresholds}",
        f"teacher_cache={str(cache).lower()}",
        f"paths.log_dir={log_dir}",
        f"hydra.sweep.dir={log_dir / 'sweep'}",
        "trainer.enable_progress_bar=false",
        *extra,
    ]
    start = time.perf_counter()
    run(args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, sizes=False, epochs=False, repeats=False).parse_args(argv)
    extra = args.overrides
    if args.tiny:
        extra = [*TINY, "data.image_size=32", "trainer.max_epochs=1", "pseudo_label.rounds=1"]
        extra += ["data.batch_size=16", *args.overrides]
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        data_dir = Path(tmp) / "data" if args.tiny else REPO / "data"
        data = [f"paths.data_dir={data_dir}"]  # shared, generated once
        # generate the data set before timing, so neither sweep pays for it (the smoke test
        # times nothing: its first sweep makes the tiny set)
        if not args.tiny:
            run(
                [
                    *data,
                    *extra,
                    "pseudo_label.rounds=0",
                    "trainer.max_epochs=1",
                    f"paths.log_dir={tmp}/warmup",
                    "teacher_cache=false",
                    f"hydra.run.dir={tmp}/warmup/run",
                    "trainer.enable_progress_bar=false",
                ]
            )
        thresholds = "0.8" if args.tiny else THRESHOLDS  # smoke: one job per sweep
        without = sweep(Path(tmp) / "no_cache", False, [*data, *extra], thresholds)
        with_cache = sweep(Path(tmp) / "cache", True, [*data, *extra], thresholds)
    shown = " ".join(extra) or "(demo defaults)"
    print(f"threshold sweep ({thresholds}), overrides: {shown}")
    print(f"| teacher cache | wall time (s) |\n|---|---:|\n| off | {without:.1f} |")
    print(f"| on | {with_cache:.1f} |")
    print(f"ratio off/on: {without / with_cache:.2f}x")


if __name__ == "__main__":
    main()
