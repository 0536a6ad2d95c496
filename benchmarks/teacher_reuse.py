"""Teacher reuse: a 3-threshold sweep with the teacher cache vs without, side by side.

Both sweeps run the same jobs (fresh log dirs, the same synthetic data); without the
cache every job trains its own teacher. Prints each wall time and the ratio.

    .venv/bin/python benchmarks/teacher_reuse.py [extra fer-train overrides...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

THRESHOLDS = "0.8,0.9,0.95"


def sweep(log_dir: Path, cache: bool, extra: list[str]) -> float:
    """Wall time of one ``fer-train -m`` threshold sweep."""
    cmd = [
        sys.executable,
        "-m",
        "fer_lightning.cli.train",
        "-m",
        f"pseudo_label.threshold={THRESHOLDS}",
        f"teacher_cache={str(cache).lower()}",
        f"paths.log_dir={log_dir}",
        f"hydra.sweep.dir={log_dir / 'sweep'}",
        "trainer.enable_progress_bar=false",
        *extra,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        data = [f"paths.data_dir={Path.cwd() / 'data'}"]  # shared, generated once
        # generate the data set before timing, so neither sweep pays for it
        subprocess.run(
            [
                sys.executable,
                "-m",
                "fer_lightning.cli.train",
                *data,
                *extra,
                "pseudo_label.rounds=0",
                "trainer.max_epochs=1",
                f"paths.log_dir={tmp}/warmup",
                "teacher_cache=false",
                f"hydra.run.dir={tmp}/warmup/run",
                "trainer.enable_progress_bar=false",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        without = sweep(Path(tmp) / "no_cache", False, [*data, *extra])
        with_cache = sweep(Path(tmp) / "cache", True, [*data, *extra])
    print(f"3-threshold sweep ({THRESHOLDS}), overrides: {' '.join(extra) or '(demo defaults)'}")
    print(f"| teacher cache | wall time (s) |\n|---|---:|\n| off | {without:.1f} |")
    print(f"| on | {with_cache:.1f} |")
    print(f"ratio off/on: {without / with_cache:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
