"""PseudoLabelCallback: at the end of a round's fit, the best checkpoint labels the pool.

Two steps, each leaving its result on disk so a killed run resumes without redoing it:
the teacher's probabilities (``round_k/teacher_probs.pt``), then the selection
(``pseudo_labels/round_{k+1}.csv``), a pure function of those probabilities.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.dataset import PredictDataset
from fer_lightning.emotions import NUM_CLASSES
from fer_lightning.io import atomic_path, atomic_write_text
from fer_lightning.pseudo.manifest import PseudoSet, read_pseudo_manifest, write_pseudo_manifest
from fer_lightning.pseudo.selection import SelectionConfig, select, selection_stats

log = logging.getLogger(__name__)


def pseudo_manifest_path(output_dir: Path, k: int) -> Path:
    """The pseudo set the student of round ``k`` trains on (written after round k-1)."""
    return output_dir / "pseudo_labels" / f"round_{k}.csv"


def teacher_probs_path(output_dir: Path, k: int) -> Path:
    """Round ``k``'s best model's probabilities on the pool (and validation set)."""
    return output_dir / f"round_{k}" / "teacher_probs.pt"


@torch.no_grad()
def predict_probs(
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
    dataset = PredictDataset(paths, datamodule.eval_transform())
    sampler = None
    if world > 1:
        sampler = DistributedSampler(
            dataset, world, trainer.global_rank, shuffle=False, drop_last=False
        )
    loader: DataLoader = datamodule.loader(dataset, sampler=sampler, persistent=False)
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


def pool_paths_and_truth(datamodule: FERDataModule, include_test: bool):
    """The images the teacher labels and their hidden labels (for the audit only)."""
    splits = datamodule.splits
    truth = splits.unlabeled.labels
    if include_test:
        truth = np.concatenate([truth, splits.test.labels])
    return datamodule.unlabeled_paths(include_test), truth


def teacher_probs(
    module: pl.LightningModule,
    datamodule: FERDataModule,
    flip: bool,
    include_test: bool,
    trainer: pl.Trainer | None = None,
) -> dict:
    """The teacher's probabilities on the pool and on the validation split, with how made."""
    paths, _ = pool_paths_and_truth(datamodule, include_test)
    return {
        "pool": predict_probs(module, datamodule, paths, flip, trainer),
        "val": predict_probs(module, datamodule, datamodule.splits.val.paths, flip, trainer),
        "flip": flip,
        "include_test": include_test,
    }


def save_teacher_probs(path: Path, probs: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(probs, tmp)


def load_teacher_probs(path: Path, flip: bool, include_test: bool) -> dict | None:
    """Saved probabilities if they were made with the same TTA and pool, else None."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved if (saved["flip"], saved["include_test"]) == (flip, include_test) else None


def write_pseudo_set(
    output_dir: Path,
    next_round: int,
    datamodule: FERDataModule,
    probs: dict,
    selection: SelectionConfig,
    accumulate: bool = False,
) -> Path:
    """Select from the teacher's probabilities; write the manifest and its audit atomically."""
    splits = datamodule.splits
    paths, truth = pool_paths_and_truth(datamodule, probs["include_test"])
    runtime = {}
    if selection.needs_validation:
        runtime["val_probs"] = probs["val"]
        runtime["val_labels"] = torch.from_numpy(splits.val.labels)
    if selection.needs_labeled_counts:
        runtime["labeled_counts"] = torch.from_numpy(splits.labeled.class_counts())
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
    if accumulate and next_round > 1:
        older = read_pseudo_manifest(pseudo_manifest_path(output_dir, next_round - 1))
        pseudo = pseudo.merged_over(older)
        lookup = dict(zip(paths.tolist(), truth.tolist(), strict=True))
        true = np.array([lookup.get(p, -1) for p in pseudo.paths.tolist()], dtype=np.int64)
    stats.update(pool=len(paths), added=len(pseudo), calibration_temperature=sel.calibration)
    target = pseudo_manifest_path(output_dir, next_round)
    write_pseudo_manifest(target, pseudo, next_round, selection.soft, true)
    atomic_write_text(target.with_suffix(".json"), json.dumps(stats, indent=2))
    log.info(
        "round %d: %d pseudo labels from %d pool images (precision %.3f) -> %s",
        next_round,
        len(pseudo),
        len(paths),
        stats.get("precision_overall", float("nan")),
        target,
    )
    return target


class PseudoLabelCallback(pl.Callback):
    """Turns round ``k``'s best checkpoint into the pseudo set of round ``k + 1``.

    Rank 0 writes the probabilities and the manifest; every rank waits for them and
    hands the same set to the DataModule.
    """

    def __init__(
        self,
        selection: SelectionConfig,
        output_dir: str | Path,
        next_round: int,
        include_test: bool = False,
        accumulate: bool = False,
        tta_flip: bool = False,
    ) -> None:
        self.selection = selection
        self.output_dir = Path(output_dir)
        self.next_round = next_round
        self.include_test = include_test
        self.accumulate = accumulate
        self.tta_flip = tta_flip

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule: FERDataModule = trainer.datamodule
        # rank 0's teardown has waited for its background checkpoint writes; the others wait here
        trainer.strategy.barrier("checkpoints_written")
        best = trainer.checkpoint_callback.best_model_path
        if best:  # the teacher is the round's best checkpoint, not its last epoch
            state = torch.load(best, map_location=pl_module.device, weights_only=True)
            pl_module.load_state_dict(state["state_dict"])
        probs = teacher_probs(pl_module, datamodule, self.tta_flip, self.include_test, trainer)
        if trainer.is_global_zero:
            save_teacher_probs(teacher_probs_path(self.output_dir, self.next_round - 1), probs)
            write_pseudo_set(
                self.output_dir,
                self.next_round,
                datamodule,
                probs,
                self.selection,
                self.accumulate,
            )
        trainer.strategy.barrier("pseudo_labels_written")
        target = pseudo_manifest_path(self.output_dir, self.next_round)
        pseudo = read_pseudo_manifest(target)
        datamodule.set_pseudo_labels(pseudo.paths, pseudo.targets, pseudo.weights)
        log.info(
            "rank %d: round %d trains on %d pseudo labels from %s",
            trainer.global_rank,
            self.next_round,
            len(pseudo),
            target,
        )
