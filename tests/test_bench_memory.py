"""Smoke test of benchmarks/memory.py: it runs at a tiny size and prints its figures.

Only the 15k case runs (the demo case is the same measurement with other overrides).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def row(stdout: str, metric: str) -> list[str]:
    """The cells of one table row, after its metric name."""
    match = re.search(rf"^\| {re.escape(metric)} \|(.*)\|$", stdout, re.MULTILINE)
    assert match, f"no row {metric!r} in:\n{stdout}"
    return [cell.strip() for cell in match.group(1).split("|")]


def test_memory_benchmark_tiny_prints_its_table():
    proc = subprocess.run(
        [sys.executable, "benchmarks/memory.py", "--tiny", "--cases", "15k"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "| metric | 15k |" in out
    for metric in (
        "peak RSS, main process (GiB)",
        "peak total as if alone, process tree (GiB)",
        "peak summed PSS, process tree (GiB)",
        "peak summed RSS, process tree (GiB)",
    ):
        values = [float(v) for v in row(out, metric)]
        assert len(values) == 1 and all(v > 0 for v in values), (metric, values)
    pss = [float(v) for v in row(out, "peak summed PSS, process tree (GiB)")]
    rss = [float(v) for v in row(out, "peak summed RSS, process tree (GiB)")]
    assert all(p <= r for p, r in zip(pss, rss, strict=True))  # PSS never exceeds RSS
    workers = [int(v) for v in row(out, "DataLoader worker processes seen")]
    assert all(w > 0 for w in workers)  # the tiny cases use 2 workers
    goal = re.search(r"^goal: 15k peak total ([\d.]+) GiB vs 3 GiB: (PASS|MISS)", out, re.M)
    assert goal, out
    assert goal.group(1) == row(out, "peak total as if alone, process tree (GiB)")[0]
    assert re.search(r"^worker growth \(15k\): ", out, re.MULTILINE)
