"""One training round: a complete ``trainer.fit`` + test, with everything on disk to resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.dataset import epoch_seed
from fer_lightning.io import atomic_write_text
from fer_lightning.models.checkpoints import check_compatible
from fer_lightning.results import flatten_config

log = logging.getLogger(__name__)


def round_dir(output_dir: Path, k: int) -> Path:
    return output_dir / f"round_{k}"


class SeedEachEpoch(pl.Callback):
    """Derive every epoch's randomness from (seed, round, epoch).

    Sampling order, dropout, worker seeds and augmentation then do not depend on what
    ran before, so a fit resumed from ``last.ckpt`` continues exactly as it would have.
    The first epoch of a fit is seeded by ``FERDataModule.train_dataloader`` (Lightning
    creates that epoch's iterator before any epoch hook); later ones here.
    """

    def __init__(self, seed: int, round_index: int) -> None:
        self.seed = seed
        self.round_index = round_index
        self._first_epoch = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_epoch = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed = epoch_seed(self.seed, self.round_index, trainer.current_epoch)
        pl.seed_everything(seed, workers=True, verbose=False)  # dropout and other torch draws
        if self._first_epoch:
            self._first_epoch = False
            return
        if isinstance(trainer.datamodule, FERDataModule):
            trainer.datamodule.seed_epoch(seed)


def _callbacks(
    cfg: DictConfig, ckpt_dir: Path, k: int, extra: list[pl.Callback]
) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = []
    for cb_cfg in (cfg.get("callbacks") or {}).values():
        if cb_cfg is None:
            continue
        if str(cb_cfg.get("_target_", "")).endswith("ModelCheckpoint"):
            callbacks.append(instantiate(cb_cfg, dirpath=str(ckpt_dir)))
        else:
            callbacks.append(instantiate(cb_cfg))
    return [*callbacks, SeedEachEpoch(int(cfg.seed), k), *extra]


def uses_tensorboard(cfg: DictConfig) -> bool:
    loggers = (cfg.get("logger") or {}).values()
    return any(str(lg.get("_target_", "")).endswith("TensorBoardLogger") for lg in loggers if lg)


@rank_zero_only
def log_hparams_session(
    cfg: DictConfig, output_dir: Path, k: int, metrics: dict[str, Any], step: int
) -> None:
    """One HPARAMS session per round: the run's config against its final metrics.

    Only session start/end summaries are written (no experiment summary), so TensorBoard
    builds the HPARAMS table from all runs and shows which settings differ; settings
    holding this run's own location are left out for the same reason.
    """
    final = {key: v for key, v in metrics.items() if key.startswith(("val/", "test/"))}
    where = str(output_dir)
    params = {
        key: value
        for key, value in flatten_config(cfg).items()
        if not (isinstance(value, str) and value.startswith(where))
    }
    _, start, end = hparams_summary(params, final)
    writer = SummaryWriter(str(output_dir / "tensorboard" / f"round_{k}"))
    for key, value in final.items():
        writer.add_scalar(key, value, step)
    file_writer = writer._get_file_writer()
    file_writer.add_summary(start, step)
    file_writer.add_summary(end, step)
    writer.close()


def _loggers(cfg: DictConfig, version: str) -> list[Any]:
    return [instantiate(lg, version=version) for lg in (cfg.get("logger") or {}).values() if lg]


def fit_round(
    cfg: DictConfig,
    datamodule: FERDataModule,
    k: int,
    output_dir: Path,
    extra_callbacks: list[pl.Callback] | None = None,
    model: pl.LightningModule | None = None,
    ckpt_path: Path | None = None,
) -> dict[str, Any]:
    """Fit round ``k`` (teacher when k == 0), test its best checkpoint, write metrics and DONE.

    ``model`` defaults to a fresh one from ``cfg.model``; ``ckpt_path`` (the round's
    ``last.ckpt``) resumes an interrupted fit with its optimizer, scheduler and epoch.
    """
    rdir = round_dir(output_dir, k)
    ckpt_dir = rdir / "checkpoints"
    datamodule.round_index = k
    model = model if model is not None else instantiate(cfg.model)
    loggers = _loggers(cfg, f"round_{k}")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=_callbacks(cfg, ckpt_dir, k, extra_callbacks or []),
        logger=loggers or False,
    )
    if ckpt_path is not None:
        check_compatible(ckpt_path, model)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    # checkpoints are written in the background (AsyncCheckpointIO); rank 0's fit returns
    # once they are on disk, and the other ranks read them only after that
    trainer.strategy.barrier("checkpoints_written")
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if isinstance(ckpt, ModelCheckpoint) else ""
    if not best:
        raise RuntimeError(
            f"round {k}: no best checkpoint was saved (monitor "
            f"{getattr(ckpt, 'monitor', None)!r} never logged?)"
        )
    test = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    metrics = {
        "round": k,
        "best_checkpoint": best,
        "val/best_macro_f1": float(ckpt.best_model_score),
        **{key: float(v) for key, v in test.items()},
    }
    for lg in loggers:
        lg.finalize("success")
    if uses_tensorboard(cfg):
        log_hparams_session(cfg, output_dir, k, metrics, trainer.global_step)
    atomic_write_text(rdir / "metrics.json", json.dumps(metrics, indent=2))
    cm = model.test_confusion_matrix.tolist()  # rows: true emotion, columns: predicted
    atomic_write_text(rdir / "confusion_matrix.json", json.dumps(cm))
    (rdir / "DONE").touch()
    return metrics
