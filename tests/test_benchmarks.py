"""Every speed benchmark runs at a tiny size and prints its table and ratio (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import ENV

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def bench(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--tiny", *args],
        cwd=BENCHMARKS.parent,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def ratio(output: str, label: str) -> float:
    match = re.search(
        rf"{re.escape(label)}[^:]*: ([0-9.]+) \(goal >= [0-9.]+: (PASS|MISS)\)", output
    )
    assert match, output
    return float(match.group(1))


@pytest.mark.parametrize(
    ("name", "header", "label"),
    [
        (
            "training_overhead",
            "| size | images | batch | workers | bare | lightning |",
            "lightning/bare",
        ),
        (
            "pseudo_label_pass",
            "| size | pool | workers | bare | callback | ratio |",
            "callback/bare",
        ),
        (
            "data_pipeline",
            "| size | default workers | loader 1w | loader 2w |",
            "loader/consumption",
        ),
    ],
)
def test_speed_benchmark_prints_its_ratio(name, header, label):
    out = bench(name)
    lines = out.splitlines()
    head = next(line for line in lines if line.startswith(header))
    row = next(line for line in lines if line.startswith("| 32 |"))
    cells = dict(zip(head.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    # Worker counts may be 0 (CPU loads in the main process); every other figure is a rate.
    rates = {
        k: float(v) for k, v in cells.items() if "workers" not in k and re.fullmatch(r"[0-9.]+", v)
    }
    assert len(rates) >= 3 and all(v > 0 for v in rates.values()), cells
    assert ratio(out, label) > 0


def test_teacher_reuse_benchmark_prints_its_ratio():
    out = bench("teacher_reuse")
    assert "| off |" in out and "| on |" in out
    match = re.search(r"ratio off/on: ([0-9.]+)x", out)
    assert match and float(match.group(1)) > 0


def test_face_detection_benchmark_prints_its_ratio_and_the_detectors():
    out = bench("face_detection")
    lines = out.splitlines()
    assert any(line.startswith("| size | photos | faces | bare | fer-predict |") for line in lines)
    speed = next(line for line in lines if line.startswith("| 32 |")).strip("| ").split(" | ")
    assert all(float(v) > 0 for v in speed), speed
    assert ratio(out, "fer-predict/bare") > 0
    for name in ("haar", "mtcnn"):
        row = next(line for line in lines if line.startswith(f"| {name} |"))
        _, rate, found, recall, false = row.strip("| ").split(" | ")
        hits, pasted = map(int, found.split("/"))
        assert float(rate) > 0 and 0 <= hits <= pasted and pasted > 0 and int(false) >= 0
        assert float(recall) == pytest.approx(hits / pasted, abs=0.01)
