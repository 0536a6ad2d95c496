"""Run the console entry points as a user would, with tiny fast settings.

:func:`fer` runs one in this process (the Hydra app, its logging and exit status, without
a Python start-up per call); :func:`run` starts a real process, for what needs one
(``kill -9``, two processes on one directory, DDP, launchers).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.checkpoints import TINY_BACKBONE

FAST = [
    # timm's test network: fits and checkpoints in a fraction of MobileNetV2's time; tests
    # about the real backbones or their ImageNet weights set model=... themselves
    f"model.backbone={TINY_BACKBONE}",
    "model.weights=null",
    "data.image_size=32",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]
# an online method's options for tiny data: 1 pool face per labeled one, and a threshold a
# barely trained network clears, so targets do pass
ONLINE = ["model.mu=1", "model.tau=0.15", "model.ema_decay=0.9"]
HELPERS = Path(__file__).resolve().parent
ROOT = HELPERS.parents[1]  # the repository: processes import tests.helpers.* from it
ENV = dict(os.environ, PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="0")
ENV["PYTHONPATH"] = os.pathsep.join([str(ROOT), ENV.get("PYTHONPATH", "")]).rstrip(os.pathsep)
FITS = "`Trainer.fit` stopped"  # Lightning's line at the end of every fit
SWEEP_THRESHOLDS = (0.3, 0.6)  # the session sweep's jobs (tests/conftest.py)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def fer(module: str, args: list[str], check: bool = True) -> Result:
    """``fer-<module> args`` in this process: its stdout, stderr and exit status."""
    main = importlib.import_module(f"fer_lightning.cli.{module}").main
    out, err = io.StringIO(), io.StringIO()
    argv, code = sys.argv, 0
    sys.argv = [f"fer-{module}", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:  # argparse, Hydra and our user errors exit this way
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    result = Result(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"fer-{module} failed ({code}):\n{result.stdout}\n{result.stderr}")
    return result


def command(module: str, args: list[str]) -> list[str]:
    """The command line of ``fer-<module>`` (run through the interpreter of the tests)."""
    return [sys.executable, "-m", f"fer_lightning.cli.{module}", *args]


def run(module: str, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m fer_lightning.cli.<module> args`` in a new process; output captured."""
    proc = subprocess.run(
        command(module, args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def fast(*overrides: str) -> list[str]:
    """:data:`FAST`, less its tiny backbone where ``overrides`` choose the model themselves."""
    chosen = any(o.startswith(("model=", "model.backbone=", "model.weights=")) for o in overrides)
    return [f for f in FAST if not (chosen and f.startswith("model."))]


def train_args(tmp: Path, *overrides: str) -> list[str]:
    """fer-train arguments with all outputs under ``tmp``; the run directory is ``tmp/run``."""
    return [
        f"hydra.run.dir={tmp / 'run'}",
        f"paths.log_dir={tmp / 'logs'}",
        f"paths.data_dir={tmp / 'data'}",
        *fast(*overrides),
        *overrides,
    ]


def raf_args(root: Path) -> list[str]:
    """fer-train on a RAF-DB-layout data set at ``root``, 40 % of train labeled."""
    return ["data=rafdb", f"data.root={root}", "data.label_fraction=0.4"]


def eval_set_args(name: str, root: Path) -> list[str]:
    """A cross-dataset test set ``name``: the class folders at ``root``, their test split."""
    return [f"+data@eval_sets.{name}=folder", f"eval_sets.{name}.root={root}"]


def train(tmp: Path, *overrides: str, check: bool = True) -> Result:
    """fer-train (in this process) with all outputs under ``tmp``; the run dir is ``tmp/run``."""
    tmp.mkdir(parents=True, exist_ok=True)
    return fer("train", train_args(tmp, *overrides), check)


def evaluate(ckpt: Path, root: Path, tmp: Path, *overrides: str) -> Result:
    """fer-eval (in this process) of ``ckpt`` on the RAF-DB-layout set at ``root``."""
    where = [f"ckpt_path={ckpt}", f"hydra.run.dir={tmp / 'eval'}"]
    data = ["data=rafdb", f"data.root={root}", "data.num_workers=0"]
    trainer = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]
    return fer("evaluate", [*where, *data, *trainer, *overrides])


def fitted_rounds(run_dir: Path) -> list[int]:
    """The rounds whose fit ran in ``run_dir`` (a cache-restored teacher has no last.ckpt)."""
    return sorted(
        int(p.parent.parent.name.split("_")[1])
        for p in run_dir.glob("round_*/checkpoints/last.ckpt")
    )


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
