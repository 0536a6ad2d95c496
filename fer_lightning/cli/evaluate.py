"""fer-eval: test a checkpoint on a data set's test split and print the result table."""

from __future__ import annotations

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.cli.common import CONFIG_DIR, hydra_entry, user_errors
from fer_lightning.eval_sets import read_eval_sets, test_on_sets
from fer_lightning.models.checkpoints import load_classifier
from fer_lightning.results import metrics_table


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild the model from the checkpoint; image size and normalisation follow its training."""
    pl.seed_everything(cfg.seed, workers=True)
    model = load_classifier(cfg.ckpt_path)
    datamodule = instantiate(cfg.data, image_size=model.hparams.image_size or cfg.data.image_size)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False)
    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    print(f"checkpoint: {cfg.ckpt_path}\ndata: {datamodule.root} ({cfg.data.test_split} split)\n")
    print(metrics_table(metrics))
    sets = read_eval_sets(cfg.get("eval_sets") or {})
    metrics |= test_on_sets(trainer, model, datamodule, sets)
    for name in sets:
        print(f"\neval set {name}: {cfg.eval_sets[name].root}\n")
        print(metrics_table(metrics, f"test@{name}"))
    return metrics


@hydra_entry
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    with user_errors("fer-eval"):
        return evaluate(cfg)["test/macro_f1"]


if __name__ == "__main__":
    main()
