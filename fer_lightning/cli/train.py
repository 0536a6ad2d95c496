"""fer-train: the Hydra app that runs teacher–student rounds and prints the rounds table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.results import metrics_table, rounds_table
from fer_lightning.rounds import run_rounds
from fer_lightning.training import round_dir


def train(cfg: DictConfig) -> list[dict]:
    """Seed, build the data, run the rounds; returns the rounds table rows."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    datamodule = instantiate(cfg.data)
    rows = run_rounds(cfg, datamodule, output_dir)
    report(rows, output_dir)
    return rows


@rank_zero_only
def report(rows: list[dict], output_dir: Path) -> None:
    """Print the final test table and the rounds table (once, under DDP)."""
    last = json.loads((round_dir(output_dir, len(rows) - 1) / "metrics.json").read_text())
    print(f"\nFinal model (round {len(rows) - 1}) on the test split:\n")
    print(metrics_table(last))
    print("\nRounds (test split, %; round 0 = teacher on labeled data only):\n")
    print(rounds_table(rows))
    print(f"\nlogs, checkpoints, pseudo labels and TensorBoard events: {output_dir}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    """Returns the final validation macro-F1 (what sweepers maximise: never test)."""
    return train(cfg)[-1]["val_macro_f1"]


# overrides that may change when a run is resumed: where and how fast, not what
RESUME_OVERRIDABLE = (
    "trainer",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "data.num_workers",
)


def resume_argv(argv: list[str]) -> list[str]:
    """``resume=<run_dir> [overrides]`` -> the run's saved overrides, the new ones, its dir."""
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    run_dir = Path(resume[-1].split("=", 1)[1]).expanduser().resolve()
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise SystemExit(
            f"resume={run_dir}: no {saved_file.relative_to(run_dir)} there; "
            "point resume= at a run directory written by fer-train"
        )
    extra = [a for a in argv if not a.startswith("resume=")]
    for arg in extra:
        key = arg.lstrip("+~").split("=", 1)[0]
        if key not in RESUME_OVERRIDABLE and not key.startswith("hydra."):
            raise SystemExit(
                f"resume: {arg!r} would change the experiment; when resuming only "
                f"{', '.join(RESUME_OVERRIDABLE)} may be overridden"
            )
    saved = yaml.safe_load(saved_file.read_text()) or []
    new_keys = {a.lstrip("+~").split("=", 1)[0] for a in extra}
    kept = [a for a in saved if a.lstrip("+~").split("=", 1)[0] not in new_keys]
    return [*kept, *extra, f"hydra.run.dir={run_dir}"]


def main() -> None:
    """Console entry point: handles ``resume=<run_dir>``, then runs the Hydra app."""
    sys.argv = [sys.argv[0], *resume_argv(sys.argv[1:])]
    hydra_main()


if __name__ == "__main__":
    main()
