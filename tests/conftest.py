"""Shared set-up: one tiny data set, one teacher-student run and one sweep for the whole session.

Tests import the helpers in tests/helpers/ (running the commands, tiny data sets). The
expensive outputs are made once (session scope) and only read by the tests that use them; a
test that needs to write makes its own run directory.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.helpers import cli
from tests.helpers.checkpoints import make_checkpoint
from tests.helpers.cli import (
    FAST,
    SWEEP_THRESHOLDS,
    Result,
    eval_set_args,
    fer,
    raf_args,
    train,
)
from tests.helpers.layouts import (
    CROSS_TEST,
    RAF_TEST,
    RAF_TRAIN,
    emotion_folders,
    make_class_folders,
    make_rafdb,
)


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per process when xdist runs several (``make test``: two on two cores).

    torch starts one thread per core in every process, so two workers (and the commands they
    launch, through ``OMP_NUM_THREADS``) would oversubscribe the cores and wait on each other.
    """
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
        cli.ENV["OMP_NUM_THREADS"] = "1"  # the commands' environment, copied at import
        torch.set_num_threads(1)  # in-process runs: the same sums as the commands


@pytest.fixture(scope="session")
def raf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RAF-DB copy (official layout, 64 train / 19 test images of 16 px)."""
    return make_rafdb(tmp_path_factory.mktemp("raf"), RAF_TRAIN, RAF_TEST)


@pytest.fixture(scope="session")
def cross_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another labeled set in class folders (``test/<emotion>/``), with no disgust face."""
    root = tmp_path_factory.mktemp("cross")
    return make_class_folders(root, {"test": emotion_folders(CROSS_TEST)}, ext=".png")


@pytest.fixture(scope="session")
def rounds_run(
    tmp_path_factory: pytest.TempPathFactory, raf: Path, cross_set: Path
) -> tuple[Path, Result]:
    """fer-train: a teacher and two students (top-k, soft labels), each also tested on
    ``cross_set`` (eval set ``cross``); (run dir, its output)."""
    tmp = tmp_path_factory.mktemp("rounds")
    result = train(
        tmp,
        *raf_args(raf),
        *eval_set_args("cross", cross_set),
        "pseudo_label=topk",
        "pseudo_label.strategy.k=2",
        "pseudo_label.strategy.min_confidence=0.0",
        "pseudo_label.soft=true",
        "pseudo_label.no_skew=false",  # with 3 labels of each emotion it keeps only exact balance
        "pseudo_label.temperature=0.5",
        "pseudo_label.rounds=2",
    )
    return tmp / "run", result


@pytest.fixture(scope="session")
def checkpoint(rounds_run: tuple[Path, Result]) -> Path:
    """The session run's teacher checkpoint (mobilenetv2, 32 px)."""
    return rounds_run[0] / "round_0" / "checkpoints" / "best.ckpt"


@dataclass
class Sweep:
    """A two-job threshold sweep: where it is, how it was launched, what it printed."""

    dir: Path
    args: list[str]
    result: Result

    def jobs(self) -> dict[float, Path]:
        """{threshold: job dir}, from each job's saved config."""
        import yaml

        found = {}
        for job in self.dir.iterdir():
            config = job / ".hydra" / "config.yaml"
            if config.is_file():
                pseudo = yaml.safe_load(config.read_text())["pseudo_label"]
                found[pseudo["strategy"]["threshold"]] = job
        return dict(sorted(found.items()))


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory, raf: Path) -> Sweep:
    """``fer-train -m pseudo_label.strategy.threshold=0.3,0.6``: a student each, one teacher.

    The fixed settings are excluded from the job names, so jobs are named
    ``excluded=<hash>,pseudo_label.strategy.threshold=<t>``.
    """
    tmp = tmp_path_factory.mktemp("sweep")
    fixed = [*raf_args(raf), "pseudo_label=threshold", "pseudo_label.rounds=1", *FAST]
    exclude = ",".join(o.split("=", 1)[0] for o in fixed)
    args = [
        "-m",
        f"pseudo_label.strategy.threshold={','.join(map(str, SWEEP_THRESHOLDS))}",
        f"hydra.sweep.dir={tmp / 'sweep'}",
        f"hydra.job.config.override_dirname.exclude_keys=[{exclude}]",
        f"paths.log_dir={tmp / 'logs'}",
        f"paths.data_dir={tmp / 'data'}",
        *fixed,
    ]
    return Sweep(tmp / "sweep", args, fer("train", args))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FERClassifier checkpoint (32 px, timm's test_efficientnet) after one optimiser step."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> tuple:
    """fer-export of the tiny checkpoint (the exporter takes seconds: done once): (file, output)."""
    tmp = tmp_path_factory.mktemp("export")
    out = tmp / "model" / "fer.onnx"
    args = [f"ckpt_path={tiny_checkpoint}", f"output={out}", f"hydra.run.dir={tmp / 'hydra'}"]
    return out, fer("export", args)


@pytest.fixture(scope="session")
def exported_onnx(onnx_export: tuple) -> Path:
    return onnx_export[0]


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for *this* interpreter (the venv), found before any user-wide "python3"."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "fer-lightning-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fer_lightning tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return "fer-lightning-test"
