"""Sweeps, launchers, Optuna search and experiment configs, through fer-train as users run them."""

from __future__ import annotations

import csv
import itertools
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.config import PseudoLabelConfig
from fer_lightning.data.synthetic_faces import render_face
from tests.helpers.cli import FAST, SWEEP_THRESHOLDS, Result, evaluate, fer, raf_args


def _compose(*overrides: str, hydra: bool = False) -> DictConfig:
    """The train config as fer-train composes it (``hydra=True``: with the hydra node)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def _sweep(tmp: Path, raf: Path, *overrides: str) -> tuple[Result, Path]:
    """``fer-train -m`` on the tiny RAF-DB copy; returns (its output, the sweep directory)."""
    sweep_dir = tmp / "sweep"
    fixed = [
        f"paths.log_dir={tmp / 'logs'}",
        f"hydra.sweep.dir={sweep_dir}",
        *raf_args(raf),
        *FAST,
    ]
    return fer("train", ["-m", *fixed, *overrides]), sweep_dir


def _final_val_f1(job_dir: Path) -> float:
    with open(job_dir / "rounds.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["val_macro_f1"])


def _assert_finished(job_dir: Path, rounds: int) -> None:
    for k in range(rounds + 1):
        assert (job_dir / f"round_{k}" / "DONE").is_file(), f"{job_dir.name}: round {k}"
    assert 0.0 <= _final_val_f1(job_dir) <= 1.0


def test_threshold_sweep_names_job_dirs_by_overrides(sweep):
    """One job per threshold, each in its own resumable run dir named by what it changes."""
    names = sorted(p.name for p in sweep.dir.iterdir() if p.is_dir())
    assert len(names) == 2
    hidden = {n.split(",")[0] for n in names}  # the excluded fixed settings: one hash
    assert len(hidden) == 1 and hidden.pop().startswith("excluded=")
    assert [n.split(",")[1] for n in names] == [
        f"pseudo_label.strategy.threshold={t}" for t in SWEEP_THRESHOLDS
    ]
    for job in sweep.jobs().values():
        _assert_finished(job, rounds=1)
    assert (sweep.dir / "multirun.yaml").is_file()


@pytest.mark.slow
def test_submitit_local_launcher_runs_every_job(tmp_path, raf):
    """submitit_local runs the jobs as submitit processes, as Slurm would (slurm_gpu)."""
    _, sweep_dir = _sweep(
        tmp_path,
        raf,
        "pseudo_label=threshold",
        "pseudo_label.strategy.threshold=0.5,0.9",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
    )
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    swept = sorted(p.name.split("pseudo_label.strategy.threshold=")[1][:3] for p in jobs)
    assert swept == ["0.5", "0.9"]
    for job in jobs:
        _assert_finished(job, rounds=1)
    assert (sweep_dir / ".submitit").is_dir()


def test_optuna_search_reports_the_best_validation_f1(tmp_path, raf):
    """Two TPE trials from the shipped search space; the best value is a trial's val F1."""
    proc, sweep_dir = _sweep(
        tmp_path,
        raf,
        "hparams_search=pseudo_label_optuna",
        "hydra.sweeper.n_trials=2",
        "pseudo_label.rounds=1",  # fixed: overrides the searched choice(1, 2, 3)
    )
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert set(results["best_params"]) == {"pseudo_label", "pseudo_label.strategy.threshold"}
    jobs = [p for p in sweep_dir.iterdir() if (p / "rounds.csv").is_file()]
    assert len(jobs) == 2
    assert results["best_value"] == pytest.approx(max(_final_val_f1(p) for p in jobs))
    assert "Failed experiment" not in proc.output


def test_optuna_failed_trial_is_reported_and_the_search_goes_on(tmp_path, raf):
    """A trial that raises is marked failed and logged; the search finishes with the others."""
    proc, sweep_dir = _sweep(
        tmp_path,
        raf,
        "hparams_search=pseudo_label_optuna",
        "hydra.sweeper.n_trials=2",
        "pseudo_label.rounds=0",
        # trial 0 asks for an invalid label fraction of 0; trial 1 trains on all labels
        "data.label_fraction=${hydra:job.num}",
    )
    assert "Failed experiment: data.label_fraction must be in (0, 1], got 0" in proc.output
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    (job,) = [p for p in sweep_dir.iterdir() if (p / "rounds.csv").is_file()]
    assert results.best_value == pytest.approx(_final_val_f1(job))


def _search_space(params: DictConfig) -> dict[str, list]:
    """Each searched key with the values to check: a choice's options, an interval's ends."""
    parser = OverridesParser.create()
    space = {}
    for override in parser.parse_overrides([f"{k}={v}" for k, v in params.items()]):
        value = override.value()
        if isinstance(value, ChoiceSweep):
            space[override.get_key_element()] = list(value.list)
        else:
            assert isinstance(value, IntervalSweep)
            space[override.get_key_element()] = [value.start, value.end]
    return space


def test_optuna_search_space_only_yields_valid_selection_options():
    """Every corner of the search space composes into options the selection accepts."""
    cfg = _compose("hparams_search=pseudo_label_optuna", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize" and sweeper.max_failure_rate == 1.0
    assert sweeper.sampler.seed == cfg.seed
    space = _search_space(sweeper.params)
    assert set(space) == {"pseudo_label", "pseudo_label.strategy.threshold", "pseudo_label.rounds"}
    for values in itertools.product(*space.values()):
        cfg = _compose(*(f"{k}={v}" for k, v in zip(space, values, strict=True)))
        assert cfg.pseudo_label.rounds >= 1
        PseudoLabelConfig.from_cfg(cfg.pseudo_label)


def test_joblib_launcher_is_installed():
    """``hydra/launcher=joblib`` (local parallel jobs) comes from hydra-joblib-launcher."""
    launcher = _compose("hydra/launcher=joblib", hydra=True).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher")


def test_slurm_gpu_launcher_asks_slurm_for_one_gpu(tmp_path, monkeypatch):
    """slurm_gpu, through hydra-submitit-launcher, writes these sbatch options.

    There is no Slurm here: a stub ``srun`` lets submitit build its Slurm executor, and
    ``map_array`` is replaced to capture the sbatch file instead of submitting it.
    """
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    sbatch: list[str] = []

    def capture(executor: submitit.AutoExecutor, fn: object, *args: object) -> list:
        sbatch.append(executor._executor._make_submission_file_text("python -m job", "uid"))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    cfg = _compose(
        "hydra/launcher=slurm_gpu",
        f"paths.log_dir={tmp_path / 'logs'}",
        "hydra.launcher.partition=gpu",
        hydra=True,
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda _: None, config=cfg)
    assert launcher.launch([["pseudo_label.strategy.threshold=0.8"]], initial_job_idx=0) == []
    lines = set(sbatch[0].splitlines())
    for option in (
        "--job-name=fer-train",
        "--partition=gpu",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--gpus-per-node=1",
        "--cpus-per-task=8",
        "--mem=32GB",
        "--time=240",
    ):
        assert f"#SBATCH {option}" in lines, option


def test_rafdb_paper_experiment():
    """The paper's setting; the RAF-DB copy and the unlabeled source are mandatory."""
    cfg = _compose("experiment=rafdb_paper")
    assert OmegaConf.is_missing(cfg.data, "root") and OmegaConf.is_missing(cfg, "unlabeled_dir")
    with pytest.raises(InterpolationToMissingValueError, match="unlabeled_dir"):
        _ = cfg.data.unlabeled_dir
    cfg = _compose("experiment=rafdb_paper", "data.root=/raf", "unlabeled_dir=/faces")
    assert cfg.data.source._target_.endswith("read_rafdb")
    assert (cfg.data.root, cfg.data.unlabeled_dir) == ("/raf", "/faces")
    assert cfg.data.image_size == 224 and cfg.model.image_size == 224
    assert cfg.data.labels_per_class is None and cfg.data.label_fraction is None
    assert cfg.data.val_fraction == 0.1
    assert cfg.model.backbone == "mobilenetv1_100" and cfg.model.pretrained is True
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.pseudo_label.strategy._target_.endswith(".Threshold")
    assert cfg.pseudo_label.rounds == 1
    assert PseudoLabelConfig.from_cfg(cfg.pseudo_label).selection.strategy.threshold == 0.9
    assert cfg.task_name == "rafdb_paper"


@pytest.mark.parametrize(
    ("overrides", "labels_per_class", "label_fraction"),
    [
        ((), 100, None),
        (("data.labels_per_class=10",), 10, None),
        (("data.labels_per_class=null", "data.label_fraction=0.25"), None, 0.25),
    ],
)
def test_rafdb_ssl_experiment(overrides, labels_per_class, label_fraction):
    """The SSL budgets: 100 labels per class by default, the others by one override."""
    cfg = _compose("experiment=rafdb_ssl", "data.root=/raf", *overrides)
    assert cfg.data.labels_per_class == labels_per_class
    assert cfg.data.label_fraction == label_fraction
    assert cfg.data.unlabeled_dir is None and cfg.data.val_fraction == 0.1
    assert cfg.model.backbone == "mobilenetv1_100" and cfg.model.pretrained is True
    assert cfg.data.image_size == 224 and cfg.trainer.accelerator == "gpu"
    strategy = PseudoLabelConfig.from_cfg(cfg.pseudo_label).selection.strategy
    assert type(strategy).__name__ == "ClassThreshold"


@pytest.mark.parametrize("experiment", ["rafdb_paper", "rafdb_ssl"])
@pytest.mark.parametrize(
    ("preset", "strategy"),
    [("balanced", "TopK"), ("threshold", "Threshold"), ("class_threshold", "ClassThreshold"),
     ("topk", "TopK"), ("crest", "Crest")],
)  # fmt: skip
def test_experiments_accept_every_selection_strategy(experiment, preset, strategy):
    """An experiment sets no strategy-specific option, so pseudo_label=<any> stays valid."""
    cfg = _compose(f"experiment={experiment}", f"pseudo_label={preset}")
    built = PseudoLabelConfig.from_cfg(cfg.pseudo_label).selection.strategy
    assert type(built).__name__ == strategy


def test_every_path_of_a_sweep_pastes_back_as_printed(sweep, raf, tmp_path):
    """Job dirs are named key=value,key=value: ckpt_path=, resume=, inputs= and output= take
    them as typed (Hydra would read the = and , as syntax)."""
    job = sweep.jobs()[SWEEP_THRESHOLDS[0]]
    assert "=" in job.name and "," in job.name
    copy = tmp_path / "sweep" / job.name  # resumed below: the session's sweep stays as it is
    shutil.copytree(job, copy)
    ckpt = copy / "round_1" / "checkpoints" / "best.ckpt"
    evaluated = evaluate(ckpt, raf, tmp_path)
    assert f"checkpoint: {ckpt}" in evaluated.stdout
    resumed = fer("train", [f"resume={copy}"])
    assert "round 1: finished earlier" in resumed.output
    face = render_face(np.random.default_rng(0), 3, 0.9, size=64)
    assert cv2.imwrite(str(copy / "face.png"), face[..., ::-1])
    predicted = fer(
        "predict",
        [
            f"ckpt_path={ckpt}",
            f"inputs={copy / 'face.png'}",
            f"output={copy / 'pred.csv'}",
            f"hydra.run.dir={tmp_path / 'predict'}",
            "detector=none",
        ],
    )
    assert f"wrote {copy / 'pred.csv'}" in predicted.stdout
