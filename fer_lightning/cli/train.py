"""fer-train: the Hydra app that runs teacher–student rounds and prints the rounds table."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytorch_lightning as pl
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
def main(cfg: DictConfig) -> float:
    """Returns the final validation macro-F1 (what sweepers maximise: never test)."""
    return train(cfg)[-1]["val_macro_f1"]


if __name__ == "__main__":
    main()
