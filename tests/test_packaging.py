"""A wheel that installs: the configs ship inside it and the CLIs find them outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_configs_and_fer_train_runs_from_an_install(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("fer_lightning-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"fer_lightning/conf/{p.relative_to(REPO / 'conf')}"
        for p in (REPO / "conf").rglob("*.yaml")
    }
    assert shipped and shipped <= names, sorted(shipped - names)[:5]
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(site))  # before the repo's editable install
    script = (  # one interpreter: where the configs come from, then fer-train --cfg job
        "import sys; from fer_lightning.cli import common, train; print(common.CONFIG_DIR);"
        " sys.argv = ['fer-train', '--cfg', 'job']; train.main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    where, job = out.stdout.split("\n", 1)
    assert Path(where) == site / "fer_lightning" / "conf"
    assert "task_name: train" in job and "backbone: mobilenetv2_100" in job
