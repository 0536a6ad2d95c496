"""The demo's effect over seeds: the teacher, the default strategy's student, and the targets.

Runs ``fer-train experiment=demo`` (what ``make demo`` runs) once per seed, each in a fresh
log directory, and prints per seed and as means: test macro-F1 of the teacher (round 0)
and of the final student, their difference, the F1 of the scarce emotions, and the pseudo
labels added per class with their precision (by the pool's hidden labels, audit only).
Checkpoints and the strategy are selected on validation inside each run; this script only
reads the results. Targets: teacher macro-F1 >= 50 %, student >= teacher + 3 points, and
fear, disgust and anger F1 each up (means over the seeds).

    .venv/bin/python benchmarks/demo_effect.py [--seeds 1,2,3] [fer-train overrides...]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fer_lightning.emotions import EMOTIONS
from fer_lightning.run_dir import RunDir

from harness import REPO, seeded_parser, seeds_and_overrides, table

TEACHER_GOAL, DELTA_GOAL = 0.50, 0.03
SCARCE = ("fear", "disgust", "anger")


def run(seed: int, log_dir: Path, overrides: list[str]) -> tuple[list[dict], float]:
    """One demo run: its rows (teacher, students) and wall time."""
    run_dir = log_dir / f"seed_{seed}"
    command = [
        sys.executable,
        "-m",
        "fer_lightning.cli.train",
        "experiment=demo",
        f"seed={seed}",
        f"paths.log_dir={log_dir}",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    layout = RunDir(run_dir)
    rounds, _ = layout.finished_rounds()
    return [layout.round_row(k) for k in rounds], seconds


def _mean(rows: list[list[dict]], index: int, key: str) -> float:
    return statistics.mean(r[index][key] for r in rows)


def main(argv: list[str] | None = None) -> None:
    args = seeded_parser(__doc__).parse_args(argv)
    seeds, overrides = seeds_and_overrides(args)
    results, times = [], []
    with tempfile.TemporaryDirectory(prefix="fer-demo-effect-") as tmp:
        # the data set is generated once, in the repo's data/ (as make demo does), not timed
        data = [f"paths.data_dir={Path(tmp) / 'data' if args.tiny else REPO / 'data'}"]
        for seed in seeds:
            rows, seconds = run(seed, Path(tmp) / "logs", [*data, *overrides])
            results.append(rows)
            times.append(seconds)

    def pct(v: float) -> str:
        return f"{100 * v:.1f}"

    header = ["seed", "teacher", "student", "delta", *(f"{e} (t->s)" for e in SCARCE)]
    header += ["pseudo added", "precision", "wall s"]
    body = []
    for seed, rows, seconds in zip(seeds, results, times, strict=True):
        t, s = rows[0], rows[-1]
        scarce = [f"{pct(t[f'test_f1_{e}'])} -> {pct(s[f'test_f1_{e}'])}" for e in SCARCE]
        body.append(
            [seed, pct(t["test_macro_f1"]), pct(s["test_macro_f1"]),
             f"{100 * (s['test_macro_f1'] - t['test_macro_f1']):+.1f}", *scarce,
             s["pseudo_added"], pct(s["pseudo_precision"]), f"{seconds:.0f}"]
        )  # fmt: skip
    print(f"demo over seeds {seeds}, overrides: {' '.join(overrides) or '(defaults)'}")
    print("test macro-F1 and per-emotion F1 in %, teacher (round 0) -> final student\n")
    print(table(header, body))
    final = len(results[0]) - 1
    per_class = []
    for e in EMOTIONS:
        count = statistics.mean(r[final][f"pseudo_count_{e}"] for r in results)
        precision = [r[final][f"pseudo_precision_{e}"] for r in results]
        known = [v for v in precision if v == v]
        per_class.append([e, f"{count:.0f}", pct(statistics.mean(known)) if known else "-"])
    print("\npseudo labels of the final round per class (mean over seeds)\n")
    print(table(["emotion", "added", "precision"], per_class))

    teacher = _mean(results, 0, "test_macro_f1")
    deltas = [r[final]["test_macro_f1"] - r[0]["test_macro_f1"] for r in results]
    print(f"\nmean teacher macro-F1 {pct(teacher)} (goal >= {pct(TEACHER_GOAL)}: "
          f"{'PASS' if teacher >= TEACHER_GOAL else 'MISS'})")  # fmt: skip
    print(f"mean student - teacher: {100 * statistics.mean(deltas):+.1f} points, range "
          f"{100 * min(deltas):+.1f} to {100 * max(deltas):+.1f} (goal >= +{100 * DELTA_GOAL:.0f}: "
          f"{'PASS' if statistics.mean(deltas) >= DELTA_GOAL else 'MISS'})")  # fmt: skip
    for e in SCARCE:
        before, after = _mean(results, 0, f"test_f1_{e}"), _mean(results, final, f"test_f1_{e}")
        print(f"mean {e} F1 {pct(before)} -> {pct(after)} ({'up' if after > before else 'NOT up'})")
    print(f"wall time per run: median {statistics.median(times):.0f} s (data set already made)")


if __name__ == "__main__":
    main()
