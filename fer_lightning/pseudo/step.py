"""The pseudo-labeling step: a teacher predicts the pool, selection picks, a manifest is written.

One producer of pseudo sets: :class:`PseudoLabelCallback` runs it at the end of a round's
fit, and the rounds loop runs the same step from the round's saved teacher when the
manifest is missing (a teacher restored from the cache, a run killed in between). Two
results stay on disk so neither is computed twice: the teacher's probabilities
(``round_k/teacher_probs.pt``) and the selection (``pseudo_labels/round_{k+1}.csv`` and its
``.json`` audit), a pure function of those probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DistributedSampler

from fer_lightning.config import PseudoLabelConfig
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.io import atomic_path, write_json
from fer_lightning.pseudo.pseudo_set import PseudoSet, read_pseudo_manifest, write_pseudo_manifest
from fer_lightning.pseudo.selection import balance_audit, select, selection_stats
from fer_lightning.run_dir import RunDir

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_files_probs(
    module: pl.LightningModule,
    datamodule: FERDataModule,
    paths: np.ndarray,
    flip: bool = False,
    trainer: pl.Trainer | None = None,
) -> torch.Tensor:
    """Probabilities [len(paths), 7] on every process, each image predicted once.

    Under DDP each rank predicts its shard (DistributedSampler pads the last one), the
    shards are gathered, and padded duplicates are dropped by index.
    """
    world = trainer.world_size if trainer is not None else 1
    sampler = None
    if world > 1:
        sampler = DistributedSampler(
            range(len(paths)), world, trainer.global_rank, shuffle=False, drop_last=False
        )
    loader = datamodule.predict_loader(paths, sampler=sampler)
    was_training = module.training
    module.eval()
    probs, index = [], []
    context = trainer.precision_plugin.forward_context() if trainer else nullcontext()
    with context:
        for x, i in loader:
            probs.append(module.predict_probs(x.to(module.device), flip).float())
            index.append(i.to(module.device))
    module.train(was_training)
    probs_t = torch.cat(probs) if probs else torch.empty(0, NUM_CLASSES, device=module.device)
    index_t = torch.cat(index) if index else torch.empty(0, dtype=torch.long, device=module.device)
    if world > 1:
        probs_t = module.all_gather(probs_t).reshape(-1, NUM_CLASSES)
        index_t = module.all_gather(index_t).reshape(-1)
    out = torch.zeros(len(paths), NUM_CLASSES)
    out[index_t.cpu()] = probs_t.cpu()  # duplicates from padding carry identical rows
    return out


@dataclass(frozen=True)
class PseudoLabelStep:
    """Round ``k``'s teacher -> round ``k + 1``'s pseudo set, for one run directory."""

    config: PseudoLabelConfig
    run: RunDir

    def produce(
        self,
        k: int,
        datamodule: FERDataModule,
        teacher: pl.LightningModule | Callable[[], pl.LightningModule],
        trainer: pl.Trainer | None = None,
    ) -> Path:
        """Write ``pseudo_labels/round_{k+1}.csv`` (rank 0) from round ``k``'s teacher.

        ``teacher`` is the model with round k's best weights, or a function loading it
        (called only when the probabilities are not saved yet). Every process calls this
        (under DDP the prediction is shared); only rank 0 writes.
        """
        if trainer is not None:
            trainer.strategy.barrier("teacher_probs_check")  # all ranks decide alike
        probs = self._saved_probs(k)
        if probs is None:
            model = teacher if isinstance(teacher, pl.LightningModule) else teacher()
            probs = self._predict(model, datamodule, trainer)
            if _rank_zero(trainer):
                with atomic_path(self.run.teacher_probs(k)) as tmp:
                    torch.save(probs, tmp)
        target = self.run.pseudo_manifest(k + 1)
        if _rank_zero(trainer):
            self._write(k + 1, datamodule, probs)
        return target

    def _predict(self, model, datamodule, trainer) -> dict:
        """The teacher's probabilities on the pool and on the validation split."""
        flip, include_test = self.config.tta_flip, self.config.include_test
        pool = datamodule.pool(include_test)
        val = datamodule.splits.val
        return {
            "pool": predict_files_probs(model, datamodule, pool.paths, flip, trainer),
            "val": predict_files_probs(model, datamodule, val.paths, flip, trainer),
            "flip": flip,
            "include_test": include_test,
        }

    def _saved_probs(self, k: int) -> dict | None:
        """Saved probabilities if they were made with the same TTA and pool, else None."""
        path = self.run.teacher_probs(k)
        if not path.is_file():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=True)
        how = (saved["flip"], saved["include_test"])
        return saved if how == (self.config.tta_flip, self.config.include_test) else None

    def _write(self, next_round: int, datamodule: FERDataModule, probs: dict) -> None:
        """Select from the probabilities; write the manifest and its audit atomically."""
        selection = self.config.selection
        splits = datamodule.splits
        pool = datamodule.pool(probs["include_test"])
        paths, truth = pool.paths, pool.labels  # the labels: hidden, for the audit only
        runtime = {}
        if selection.needs_validation:
            runtime["val_probs"] = probs["val"]
            runtime["val_labels"] = torch.from_numpy(splits.val.labels)
        labeled_counts = torch.from_numpy(splits.labeled.class_counts())
        if selection.needs_labeled_counts:
            runtime["labeled_counts"] = labeled_counts
        sel = select(probs["pool"], selection, **runtime)
        pseudo = PseudoSet.from_selection(paths, sel)
        true = truth[sel.index.numpy()]
        stats = selection_stats(sel, NUM_CLASSES, torch.from_numpy(truth))
        if len(sel) == 0:
            log.warning(
                "round %d: the teacher selected no pseudo labels from %d pool images; "
                "the student trains on the labeled data alone",
                next_round,
                len(paths),
            )
        if self.config.accumulate and next_round > 1:
            older = read_pseudo_manifest(self.run.pseudo_manifest(next_round - 1))
            pseudo = pseudo.merged_over(older)
            lookup = dict(zip(paths.tolist(), truth.tolist(), strict=True))
            true = np.array([lookup.get(p, -1) for p in pseudo.paths.tolist()], dtype=np.int64)
        stats.update(pool=len(paths), added=len(pseudo), calibration_temperature=sel.calibration)
        balance = balance_audit(np.bincount(pseudo.labels, minlength=NUM_CLASSES), labeled_counts)
        stats.update(balance)
        _warn_about_balance(next_round, balance, len(pseudo))
        target = self.run.pseudo_manifest(next_round)
        write_pseudo_manifest(target, pseudo, next_round, selection.soft, true)
        write_json(self.run.pseudo_audit(next_round), stats)
        log.info(
            "round %d: %d pseudo labels from %d pool images (precision %.3f) -> %s",
            next_round,
            len(pseudo),
            len(paths),
            stats.get("precision_overall", float("nan")),
            target,
        )


def _warn_about_balance(next_round: int, balance: dict, added: int) -> None:
    """Say so when a pseudo set leaves an emotion with nothing or skews the training set."""
    if added and balance["no_pseudo"]:
        names = ", ".join(EMOTIONS[c] for c in balance["no_pseudo"])
        log.warning(
            "round %d: the pseudo set adds no %s face: the teacher gave too few candidates "
            "(a weak teacher on hard emotions; rank-based strategies such as "
            "pseudo_label=balanced keep each emotion's best)",
            next_round,
            names,
        )
    if balance["skewed"]:
        log.warning(
            "round %d: labeled + pseudo is more skewed than the labeled set: %s is %.1f %% "
            "of it (the labeled set's largest share: %.1f %%); pseudo_label.no_skew=true "
            "trims the pseudo set so that this never happens",
            next_round,
            EMOTIONS[balance["largest_after"]],
            100 * balance["largest_share_after"],
            100 * balance["largest_share_labeled"],
        )


def _rank_zero(trainer: pl.Trainer | None) -> bool:
    return trainer.is_global_zero if trainer is not None else rank_zero_only.rank == 0
