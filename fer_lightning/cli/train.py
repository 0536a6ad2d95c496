"""fer-train: the Hydra app that trains a FER model and prints its test results."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.results import metrics_table
from fer_lightning.training import fit_round

log = logging.getLogger("fer_lightning")


def train(cfg: DictConfig) -> dict[str, float]:
    """Seed, build the data, fit and test; returns the test metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    datamodule = instantiate(cfg.data)
    metrics = fit_round(cfg, datamodule, 0, output_dir)
    print(metrics_table(metrics))
    print(f"\nlogs, checkpoints and TensorBoard events: {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    return train(cfg)["test/macro_f1"]


if __name__ == "__main__":
    main()
