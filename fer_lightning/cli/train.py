"""fer-train: the Hydra app that runs teacher–student rounds and prints the rounds table."""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from fer_lightning.cli.common import CONFIG_DIR, flags_first, literal_paths, user_errors
from fer_lightning.config import apply_study_role, build, validate_train
from fer_lightning.errors import RunDirError
from fer_lightning.experiment import settings
from fer_lightning.results import metrics_table, rounds_reading, rounds_table
from fer_lightning.rounds import run_rounds
from fer_lightning.run_dir import RunDir

# recorded beside each run's config, so a study can be re-run on the same stack
KEY_PACKAGES = (
    "fer_lightning",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "timm",
    "albumentations",
    "hydra-core",
    "torchmetrics",
    "numpy",
)


def _hydra_files(cfg: DictConfig) -> dict[str, str]:
    """What Hydra would write to ``.hydra/``, plus the installed versions of the key packages."""
    hydra_cfg = HydraConfig.instance().cfg
    versions = {name: importlib.metadata.version(name) for name in KEY_PACKAGES}
    return {
        "config.yaml": OmegaConf.to_yaml(cfg),
        "hydra.yaml": OmegaConf.to_yaml(hydra_cfg),
        "overrides.yaml": OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task),
        "versions.yaml": yaml.safe_dump(versions, sort_keys=False),
    }


def train(cfg: DictConfig) -> list[dict]:
    """Check the config, own the run directory, run the rounds; returns the table rows."""
    apply_study_role(cfg)
    pseudo = validate_train(cfg)
    datamodule = build(cfg.data)  # its own checks, before the run directory is claimed
    run = RunDir(HydraConfig.get().runtime.output_dir)
    # DDP ranks > 0 are started by rank 0 inside its run: the directory is already owned
    resumed = _resumed_from is not None and Path(_resumed_from) == run.root.resolve()
    owned = (
        run.claim(settings(cfg), _hydra_files(cfg), resumed, datamodule.splits_dir)
        if rank_zero_only.rank == 0
        else None
    )
    with owned or contextlib.nullcontext():
        pl.seed_everything(cfg.seed, workers=True)
        rows = run_rounds(cfg, datamodule, run, pseudo)
        report(rows, run)
    return rows


@rank_zero_only
def report(rows: list[dict], run: RunDir) -> None:
    """Print the final test table and the rounds table (once, under DDP)."""
    last = run.read_metrics(len(rows) - 1)
    print(f"\nFinal model (round {len(rows) - 1}) on the test split:\n")
    print(metrics_table(last))
    print("\nRounds (test split, %; round 0 = teacher on labeled data only):\n")
    print(rounds_table(rows))
    print()
    print(rounds_reading(rows, str(run.root)))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    """Returns the final validation macro-F1 (what sweepers maximise: never test)."""
    with user_errors("fer-train"):
        return train(cfg)[-1]["val_macro_f1"]


def resume_argv(argv: list[str]) -> list[str]:
    """``resume=<run_dir> [overrides]`` -> the run's saved overrides, the new ones, its dir.

    New overrides replace saved ones of the same key; the run directory's record then
    refuses any that would change the experiment (only where it runs and how fast may).
    """
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    run = RunDir(Path(resume[-1].split("=", 1)[1]).expanduser().resolve())
    saved_file = run.hydra / "overrides.yaml"
    if not saved_file.is_file():
        raise RunDirError(
            f"resume={run.root}: no {saved_file.relative_to(run.root)} there; "
            "point resume= at a run directory written by fer-train"
        )
    extra = [a for a in argv if not a.startswith("resume=")]
    saved = yaml.safe_load(saved_file.read_text()) or []
    new_keys = {a.lstrip("+~").split("=", 1)[0] for a in extra}
    kept = [a for a in saved if a.lstrip("+~").split("=", 1)[0] not in new_keys]
    return [*kept, *extra, f"hydra.run.dir={run.root}"]


_resumed_from: str | None = None  # the run directory of this process's resume=, if any


def main() -> None:
    """Console entry point: handles ``resume=<run_dir>``, then runs the Hydra app."""
    global _resumed_from
    resume = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("resume=")]
    _resumed_from = str(Path(resume[-1]).expanduser().resolve()) if resume else None
    try:
        argv = resume_argv(sys.argv[1:])
    except RunDirError as err:
        print(f"fer-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = [sys.argv[0], *literal_paths(flags_first(argv))]
    hydra_main()


if __name__ == "__main__":
    main()
