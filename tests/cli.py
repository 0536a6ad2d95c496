"""Run the console entry points in a subprocess, as a user would, with tiny fast settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FAST = [
    "data.image_size=32",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


ENV = dict(os.environ, PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="0")


def command(module: str, args: list[str]) -> list[str]:
    """The command line of ``fer-<module>`` (run through the interpreter of the tests)."""
    return [sys.executable, "-m", f"fer_lightning.cli.{module}", *args]


def run(module: str, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m fer_lightning.cli.<module> args`` in ``cwd``; output captured as text."""
    proc = subprocess.run(
        command(module, args),
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def train_args(tmp: Path, *overrides: str) -> list[str]:
    """fer-train arguments with all outputs under ``tmp``; the run directory is ``tmp/run``."""
    return [
        f"hydra.run.dir={tmp / 'run'}",
        f"paths.log_dir={tmp / 'logs'}",
        f"paths.data_dir={tmp / 'data'}",
        *FAST,
        *overrides,
    ]


def train(tmp: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """fer-train with all outputs under ``tmp``; the run directory is ``tmp/run``."""
    tmp.mkdir(parents=True, exist_ok=True)
    return run("train", train_args(tmp, *overrides), tmp, check)


def tensorboard_tags(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    """{tensorboard run (e.g. round_0): {tag: scalar values}}, read as TensorBoard reads them."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.util import tensor_util

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(run_dir / "tensorboard"))
    mux.Reload()
    out: dict[str, dict[str, list[float]]] = {}
    for name, tags in mux.Runs().items():
        out[name] = {}
        for tag in tags.get("tensors", []):
            values = []
            for event in mux.Tensors(name, tag):
                array = tensor_util.make_ndarray(event.tensor_proto)
                values.append(float(array) if array.size == 1 and array.dtype.kind == "f" else 0.0)
            out[name][tag] = values
    return out
