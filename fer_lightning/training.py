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
from pytorch_lightning.loggers import TensorBoardLogger

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.io import atomic_write_text
from fer_lightning.results import flatten_config

log = logging.getLogger(__name__)


def round_dir(output_dir: Path, k: int) -> Path:
    return output_dir / f"round_{k}"


def _callbacks(cfg: DictConfig, ckpt_dir: Path, extra: list[pl.Callback]) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = []
    for cb_cfg in (cfg.get("callbacks") or {}).values():
        if cb_cfg is None:
            continue
        if str(cb_cfg.get("_target_", "")).endswith("ModelCheckpoint"):
            callbacks.append(instantiate(cb_cfg, dirpath=str(ckpt_dir)))
        else:
            callbacks.append(instantiate(cb_cfg))
    return callbacks + extra


def _loggers(cfg: DictConfig, version: str) -> list[Any]:
    return [instantiate(lg, version=version) for lg in (cfg.get("logger") or {}).values() if lg]


def fit_round(
    cfg: DictConfig,
    datamodule: FERDataModule,
    k: int,
    output_dir: Path,
    extra_callbacks: list[pl.Callback] | None = None,
    model: pl.LightningModule | None = None,
) -> dict[str, Any]:
    """Fit round ``k`` (teacher when k == 0), test its best checkpoint, write metrics and DONE.

    ``model`` defaults to a fresh one from ``cfg.model``.
    """
    rdir = round_dir(output_dir, k)
    ckpt_dir = rdir / "checkpoints"
    model = model if model is not None else instantiate(cfg.model)
    loggers = _loggers(cfg, f"round_{k}")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=_callbacks(cfg, ckpt_dir, extra_callbacks or []),
        logger=loggers or False,
    )
    trainer.fit(model, datamodule=datamodule)
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
        if isinstance(lg, TensorBoardLogger):
            final = {key: v for key, v in metrics.items() if key.startswith(("val/", "test/"))}
            lg.log_hyperparams(flatten_config(cfg), metrics=final, step=trainer.global_step)
            lg.finalize("success")
    atomic_write_text(rdir / "metrics.json", json.dumps(metrics, indent=2))
    cm = model.test_confusion_matrix.tolist()  # rows: true emotion, columns: predicted
    atomic_write_text(rdir / "confusion_matrix.json", json.dumps(cm))
    (rdir / "DONE").touch()
    return metrics
