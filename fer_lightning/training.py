"""One training round: a complete ``trainer.fit`` + test, with everything on disk to resume."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_object, instantiate
from lightning_utilities.core.apply_func import apply_to_collection
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.dataset import epoch_seed
from fer_lightning.data.manifest import Manifest
from fer_lightning.eval_sets import test_on_sets
from fer_lightning.experiment import flatten
from fer_lightning.models.checkpoints import check_compatible
from fer_lightning.run_dir import TENSORBOARD_DIR, RunDir

log = logging.getLogger(__name__)


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


class Cost(pl.Callback):
    """What a round's fit cost: wall seconds of training and images through the network.

    Online methods push ``2 * mu`` pool views per labeled face through it, so epochs and
    steps alone would hide a several-fold difference. Kept in checkpoints, so a resumed fit
    reports the whole fit's cost.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.images = 0
        self._since: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        sizes: list[int] = []
        apply_to_collection(batch, torch.Tensor, lambda t: t.ndim == 4 and sizes.append(len(t)))
        self.images += sum(sizes) * trainer.world_size
        now = time.perf_counter()
        if self._since is not None:
            self.seconds += now - self._since
        self._since = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = None  # validation is not training's cost

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "images": self.images}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds = float(state_dict["seconds"])
        self.images = int(state_dict["images"])


def build_callbacks(cfg: DictConfig, run: RunDir, k: int, extra: list[pl.Callback]) -> list:
    """The config's callbacks (checkpoints into round k's folder), the epoch seeding, ``extra``."""
    callbacks: list[pl.Callback] = []
    for cb_cfg in (cfg.get("callbacks") or {}).values():
        if cb_cfg is None:
            continue
        if _builds(cb_cfg, ModelCheckpoint):
            callbacks.append(instantiate(cb_cfg, dirpath=str(run.checkpoints(k))))
        else:
            callbacks.append(instantiate(cb_cfg))
    return [*callbacks, SeedEachEpoch(int(cfg.seed), k), *extra]


def build_loggers(cfg: DictConfig, run: RunDir, k: int) -> list[Any]:
    """The config's loggers writing into the run directory, one version per round."""
    loggers = []
    for lg in (cfg.get("logger") or {}).values():
        if not lg:
            continue
        where = {"save_dir": str(run.root), "version": RunDir.tensorboard_version(k)}
        if _builds(lg, TensorBoardLogger):
            where["name"] = TENSORBOARD_DIR
        loggers.append(instantiate(lg, **where))
    return loggers


def uses_tensorboard(cfg: DictConfig) -> bool:
    loggers = (cfg.get("logger") or {}).values()
    return any(_builds(lg, TensorBoardLogger) for lg in loggers if lg)


def _builds(node: DictConfig, base: type) -> bool:
    """Whether the config node's ``_target_`` is ``base`` or a subclass (imported, not matched
    by name, so an alias or a subclass of one's own counts)."""
    target = node.get("_target_")
    if target is None:
        return False
    built = get_object(str(target))
    return isinstance(built, type) and issubclass(built, base)


@rank_zero_only
def log_hparams_session(
    cfg: DictConfig, run: RunDir, k: int, metrics: dict[str, Any], step: int
) -> None:
    """One HPARAMS session per round: the run's config against its final metrics.

    Only session start/end summaries are written (no experiment summary), so TensorBoard
    builds the HPARAMS table from all runs and shows which settings differ; settings
    holding this run's own location are left out for the same reason.
    """
    final = {key: v for key, v in metrics.items() if key.startswith(("val/", "test/"))}
    where = str(run.root)
    params = {}
    for key, value in flatten(cfg).items():
        value = str(value) if isinstance(value, list | dict) else value
        value = "None" if value is None else value
        if not (isinstance(value, str) and value.startswith(where)):
            params[key] = value
    _, start, end = hparams_summary(params, final)
    writer = SummaryWriter(str(run.tensorboard / RunDir.tensorboard_version(k)))
    for key, value in final.items():
        writer.add_scalar(key, value, step)
    file_writer = writer._get_file_writer()
    file_writer.add_summary(start, step)
    file_writer.add_summary(end, step)
    writer.close()


def fit_round(
    cfg: DictConfig,
    datamodule: FERDataModule,
    k: int,
    run: RunDir,
    model: pl.LightningModule,
    extra_callbacks: list[pl.Callback] | None = None,
    ckpt_path: str | None = None,
    eval_sets: Mapping[str, Manifest] | None = None,
) -> dict[str, Any]:
    """Fit round ``k`` (teacher when k == 0), test its best checkpoint, write metrics and DONE.

    ``ckpt_path`` (the round's ``last.ckpt``) resumes an interrupted fit with its
    optimizer, scheduler and epoch; ``eval_sets`` are tested too (cross-dataset).
    """
    loggers = build_loggers(cfg, run, k)
    cost = Cost()
    # small data sets have few steps per epoch: log at least once per epoch
    batches = -(-datamodule.train_size() // datamodule.batch_size)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, run, k, [cost, *(extra_callbacks or [])]),
        logger=loggers or False,
        log_every_n_steps=max(1, min(int(cfg.trainer.get("log_every_n_steps", 50)), batches)),
    )
    if ckpt_path is not None:
        check_compatible(ckpt_path, model)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    # before testing, which restores the callbacks' state from the best checkpoint
    spent = {"cost/seconds": round(cost.seconds, 3), "cost/images": cost.images}
    # an online method's audit of its last epoch on the pool (pool/*), kept in its checkpoints
    online = dict(getattr(model, "pool_audit", {}))
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
    confusion = model.test_confusion_matrix.tolist()  # rows: true emotion, columns: predicted
    others = test_on_sets(trainer, model, datamodule, eval_sets or {}, best)
    metrics = {
        "round": k,
        "best_checkpoint": best,
        "val/best_macro_f1": float(ckpt.best_model_score),
        "steps": trainer.global_step,
        **spent,
        **online,
        **{key: float(v) for key, v in test.items()},
        **others,
    }
    for lg in loggers:
        lg.finalize("success")
    if any(isinstance(lg, TensorBoardLogger) for lg in loggers):
        log_hparams_session(cfg, run, k, metrics, trainer.global_step)
    if trainer.is_global_zero:
        run.finish_round(k, metrics, confusion)
    trainer.strategy.barrier("round_done")
    return metrics
