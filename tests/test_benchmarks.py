"""Every speed benchmark runs at a tiny size and prints its table and ratio (no timing asserted)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def bench(name: str, *args: str) -> str:
    """``benchmarks/<name>.py --tiny args`` in this process (as ``make bench`` runs it); stdout."""
    out, argv, cwd = io.StringIO(), sys.argv, os.getcwd()
    sys.argv = [f"{name}.py", "--tiny", *args]
    sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import harness.py beside them
    os.chdir(BENCHMARKS.parent)
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(BENCHMARKS / f"{name}.py"), run_name="__main__")
    finally:
        sys.argv = argv
        sys.path.remove(str(BENCHMARKS))
        os.chdir(cwd)
    return out.getvalue()


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


def test_demo_effect_benchmark_prints_its_table_and_targets():
    out = bench("demo_effect")
    assert "| seed | teacher | student | delta | fear (t->s) |" in out
    assert re.search(r"mean teacher macro-F1 [0-9.]+ \(goal >= 50.0: (PASS|MISS)\)", out)
    assert re.search(r"mean student - teacher: [-+][0-9.]+ points", out)
    assert "| emotion | added | precision |" in out and "mean fear F1 " in out


def test_transfer_parity_benchmark_prints_both_sides():
    out = bench("transfer_parity")
    assert "| seed | fer steps | fer val | fer test | fer s | plain steps | plain val |" in out
    assert re.search(r"fer - plain test macro-F1: mean [-+][0-9.]+ points", out)


def test_real_faces_benchmark_prints_the_study_report(tmp_path):
    out = bench("real_faces", "--out", str(tmp_path))
    assert "study on the synthetic demo: 2 optimizer steps per fit" in out
    assert "| study=balanced | 1 |" in out and "| study=baseline | 1 |" in out
    assert "| steps |" in out  # each run's optimizer steps, the same for every fit


def test_fixmatch_parity_benchmark_prints_both_sides():
    out = bench("fixmatch_parity")
    assert "| seed | fer steps | fer val | fer test | fer s | plain steps | plain val |" in out
    row = next(line for line in out.splitlines() if line.startswith("| 1 |"))
    assert row.split(" | ")[1] == "2" and row.split(" | ")[5] == "2"  # both sides: 2 steps
    assert re.search(r"fer - plain test macro-F1: mean [-+][0-9.]+ points", out)


def test_online_step_benchmark_prints_the_cost_of_a_step():
    out = bench("online_step")
    head = next(line for line in out.splitlines() if line.startswith("| size | mu |"))
    row = next(line for line in out.splitlines() if line.startswith("| 32 |"))
    cells = dict(zip(head.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert float(cells["fixmatch images/s"]) > 0 and float(cells["step cost"]) > 0
    # an online step moves its pool views too: more bytes per step than a supervised one
    assert float(cells["fixmatch KiB/step"]) > float(cells["sup KiB/step"])
