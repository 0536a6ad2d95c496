"""PseudoLabelCallback: at the end of a round's fit, the best checkpoint labels the pool."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.dataset import PredictDataset
from fer_lightning.emotions import NUM_CLASSES
from fer_lightning.io import atomic_write_text
from fer_lightning.pseudo.manifest import PseudoSet, read_pseudo_manifest, write_pseudo_manifest
from fer_lightning.pseudo.selection import (
    SelectionConfig,
    per_class_mean_confidence,
    per_class_precision,
    select,
    selection_stats,
)

log = logging.getLogger(__name__)


def pseudo_manifest_path(output_dir: Path, k: int) -> Path:
    """The pseudo set the student of round ``k`` trains on (written after round k-1)."""
    return output_dir / "pseudo_labels" / f"round_{k}.csv"


@torch.no_grad()
def predict_probs(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: FERDataModule,
    paths: np.ndarray,
    flip: bool = False,
) -> torch.Tensor:
    """Teacher probabilities [len(paths), 7] on every process, each image predicted once.

    Under DDP each rank predicts its shard (DistributedSampler pads the last one), the
    shards are gathered, and padded duplicates are dropped by index.
    """
    dataset = PredictDataset(paths, datamodule.eval_transform())
    sampler = None
    if trainer.world_size > 1:
        sampler = DistributedSampler(
            dataset, trainer.world_size, trainer.global_rank, shuffle=False, drop_last=False
        )
    loader: DataLoader = datamodule.loader(dataset, sampler=sampler, persistent=False)
    was_training = module.training
    module.eval()
    probs, index = [], []
    with trainer.precision_plugin.forward_context():
        for x, i in loader:
            probs.append(module.predict_probs(x.to(module.device), flip).float())
            index.append(i.to(module.device))
    module.train(was_training)
    probs_t = torch.cat(probs) if probs else torch.empty(0, NUM_CLASSES, device=module.device)
    index_t = torch.cat(index) if index else torch.empty(0, dtype=torch.long, device=module.device)
    if trainer.world_size > 1:
        probs_t = module.all_gather(probs_t).reshape(-1, NUM_CLASSES)
        index_t = module.all_gather(index_t).reshape(-1)
    out = torch.zeros(len(paths), NUM_CLASSES)
    out[index_t.cpu()] = probs_t.cpu()  # duplicates from padding carry identical rows
    return out


class PseudoLabelCallback(pl.Callback):
    """Turns round ``k``'s best checkpoint into the pseudo set of round ``k + 1``.

    On rank 0 it writes ``pseudo_labels/round_{k+1}.csv`` (+ a ``.json`` audit) atomically;
    every rank waits for it and hands the same set to the DataModule.
    """

    def __init__(
        self,
        selection: SelectionConfig,
        output_dir: str | Path,
        next_round: int,
        class_score: str = "precision",
        include_test: bool = False,
        accumulate: bool = False,
        tta_flip: bool = False,
    ) -> None:
        if class_score not in ("precision", "confidence"):
            raise ValueError(
                f"pseudo_label.class_score must be precision or confidence, got {class_score!r}"
            )
        self.selection = selection
        self.output_dir = Path(output_dir)
        self.next_round = next_round
        self.class_score = class_score
        self.include_test = include_test
        self.accumulate = accumulate
        self.tta_flip = tta_flip

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule: FERDataModule = trainer.datamodule
        best = trainer.checkpoint_callback.best_model_path
        if best:  # the teacher is the round's best checkpoint, not its last epoch
            state = torch.load(best, map_location=pl_module.device, weights_only=True)
            pl_module.load_state_dict(state["state_dict"])
        splits = datamodule.splits
        paths = datamodule.unlabeled_paths(self.include_test)
        true_labels = splits.unlabeled.labels
        if self.include_test:
            true_labels = np.concatenate([true_labels, splits.test.labels])
        probs = predict_probs(trainer, pl_module, datamodule, paths, self.tta_flip)
        class_score = labeled_counts = None
        if self.selection.needs_class_score:
            if self.class_score == "precision":
                val_probs = predict_probs(
                    trainer, pl_module, datamodule, splits.val.paths, self.tta_flip
                )
                class_score = per_class_precision(val_probs, torch.from_numpy(splits.val.labels))
            else:
                class_score = per_class_mean_confidence(probs)
        if self.selection.needs_labeled_counts:
            labeled_counts = torch.from_numpy(splits.labeled.class_counts())
        sel = select(probs, self.selection, class_score=class_score, labeled_counts=labeled_counts)
        target = pseudo_manifest_path(self.output_dir, self.next_round)
        if trainer.is_global_zero:
            self._write(target, paths, sel, true_labels)
        trainer.strategy.barrier("pseudo_labels_written")
        pseudo = read_pseudo_manifest(target)
        datamodule.set_pseudo_labels(pseudo.paths, pseudo.targets, pseudo.weights)
        log.info(
            "rank %d: round %d trains on %d pseudo labels from %s",
            trainer.global_rank,
            self.next_round,
            len(pseudo),
            target,
        )

    def _write(self, target: Path, paths: np.ndarray, sel, true_labels: np.ndarray) -> None:
        pseudo = PseudoSet.from_selection(paths, sel)
        true = true_labels[sel.index.numpy()]
        stats = selection_stats(sel, NUM_CLASSES, torch.from_numpy(true_labels))
        if len(sel) == 0:
            log.warning(
                "round %d: the teacher selected no pseudo labels from %d pool images; "
                "the student trains on the labeled data alone",
                self.next_round,
                len(paths),
            )
        if self.accumulate and self.next_round > 1:
            older = read_pseudo_manifest(pseudo_manifest_path(self.output_dir, self.next_round - 1))
            pseudo = pseudo.merged_over(older)
            lookup = dict(zip(paths.tolist(), true_labels.tolist(), strict=True))
            true = np.array([lookup.get(p, -1) for p in pseudo.paths.tolist()], dtype=np.int64)
        stats.update(pool=len(paths), added=len(pseudo))
        write_pseudo_manifest(target, pseudo, self.next_round, self.selection.soft, true)
        atomic_write_text(target.with_suffix(".json"), json.dumps(stats, indent=2))
        log.info(
            "round %d: %d pseudo labels from %d pool images (precision %.3f) -> %s",
            self.next_round,
            len(pseudo),
            len(paths),
            stats.get("precision_overall", float("nan")),
            target,
        )
