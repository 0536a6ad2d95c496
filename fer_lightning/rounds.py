"""Teacher–student rounds: round 0 fits the teacher, round k fits a student on labeled ∪ pseudo(k).

Everything a later round needs is on disk in the run directory (splits, each round's
best checkpoint and DONE marker, the pseudo-label manifests), so runs can be resumed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter

from fer_lightning.callbacks.pseudo_label import (
    PseudoLabelCallback,
    load_teacher_probs,
    pseudo_manifest_path,
    save_teacher_probs,
    teacher_probs,
    teacher_probs_path,
    write_pseudo_set,
)
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.emotions import EMOTIONS
from fer_lightning.io import atomic_path
from fer_lightning.models.checkpoints import load_classifier
from fer_lightning.pseudo.manifest import read_pseudo_manifest
from fer_lightning.pseudo.selection import SelectionConfig
from fer_lightning.teacher_cache import TeacherCache, teacher_key
from fer_lightning.training import fit_round, log_hparams_session, round_dir, uses_tensorboard

log = logging.getLogger(__name__)

STUDENT_INITS = ("pretrained", "teacher")


def selection_config(pcfg: DictConfig) -> SelectionConfig:
    """The selection options of the ``pseudo_label`` group (other keys drive the rounds)."""
    names = set(SelectionConfig.__dataclass_fields__)
    return SelectionConfig.from_options(**{k: v for k, v in pcfg.items() if k in names})


def _student_model(cfg: DictConfig, pcfg: DictConfig, output_dir: Path, k: int):
    overrides = {}
    if pcfg.get("student_drop_rate") is not None:
        overrides["drop_rate"] = pcfg.student_drop_rate
    model = instantiate(cfg.model, **overrides)
    if pcfg.student_init == "teacher":
        teacher = round_dir(output_dir, k - 1) / "checkpoints" / "best.ckpt"
        state = torch.load(teacher, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state)
        log.info("round %d: student starts from the teacher %s", k, teacher)
    return model


def round_row(output_dir: Path, k: int, labeled: int) -> dict[str, Any]:
    """One ``rounds.csv`` row from round k's metrics.json and its pseudo-label audit."""
    metrics = json.loads((round_dir(output_dir, k) / "metrics.json").read_text())
    row: dict[str, Any] = {
        "round": k,
        "labeled": labeled,
        "val_macro_f1": metrics["val/best_macro_f1"],
        "test_macro_f1": metrics["test/macro_f1"],
        "test_acc": metrics["test/acc"],
    }
    row.update({f"test_f1_{e}": metrics[f"test/f1_{e}"] for e in EMOTIONS})
    audit = pseudo_manifest_path(output_dir, k).with_suffix(".json")
    stats = json.loads(audit.read_text()) if k > 0 and audit.is_file() else {}
    row["pseudo_added"] = stats.get("added", 0)
    row["pseudo_precision"] = stats.get("precision_overall", math.nan)
    for name, key in (("count", "count"), ("conf", "mean_confidence"), ("precision", "precision")):
        values = stats.get(key, [math.nan] * len(EMOTIONS))
        row.update({f"pseudo_{name}_{e}": v for e, v in zip(EMOTIONS, values, strict=True)})
    return row


def write_rounds_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _distributed(cfg: DictConfig) -> bool:
    devices = cfg.trainer.get("devices", 1)
    return "ddp" in str(cfg.trainer.get("strategy", "")) or (
        isinstance(devices, int) and (devices > 1 or devices == -1)
    )


class Rounds:
    """The rounds of one run directory; every step first checks what is already on disk."""

    def __init__(self, cfg: DictConfig, datamodule: FERDataModule, output_dir: Path) -> None:
        self.cfg = cfg
        self.dm = datamodule
        self.out = output_dir
        self.pcfg = cfg.get("pseudo_label") or OmegaConf.create({"rounds": 0})
        self.rounds = int(self.pcfg.rounds)
        # validate the selection options before any training
        self.selection = selection_config(self.pcfg) if self.rounds > 0 else None
        if self.rounds > 0 and self.pcfg.student_init not in STUDENT_INITS:
            raise ValueError(
                f"pseudo_label.student_init must be one of {STUDENT_INITS}, "
                f"got {self.pcfg.student_init!r}"
            )
        if self.rounds > 0 and self.pcfg.include_test:
            log.warning(
                "pseudo_label.include_test=true: the teacher labels the TEST images too "
                "(transductive); test metrics are then not comparable with inductive runs"
            )

    def run(self) -> list[dict]:
        """Fit the teacher and ``pseudo_label.rounds`` students; returns the table rows."""
        cache = None
        if self.cfg.get("teacher_cache") and not _distributed(self.cfg):
            cache = TeacherCache(self.cfg.paths.teacher_cache_dir, teacher_key(self.cfg))
            log.info("teacher cache key %s (%s)", cache.key, cache.entry)
            with cache.claim():
                if cache.ready and not self._done(0):
                    cache.restore(self.out)
                    if uses_tensorboard(self.cfg):
                        metrics = json.loads((round_dir(self.out, 0) / "metrics.json").read_text())
                        log_hparams_session(self.cfg, self.out, 0, metrics, 0)
                self._prepare_data()
                self._round(0)
                if not cache.ready:
                    cache.store(self.out)
        else:
            self._prepare_data()
            self._round(0)
        for k in range(1, self.rounds + 1):
            self._round(k)
        return self._finish()

    def _done(self, k: int) -> bool:
        return (round_dir(self.out, k) / "DONE").is_file()

    def _prepare_data(self) -> None:
        self.dm.prepare_data()
        self.dm.setup("fit")

    def _round(self, k: int) -> None:
        pcfg = self.pcfg
        if k > 0:
            pseudo = read_pseudo_manifest(pseudo_manifest_path(self.out, k))
            self.dm.set_pseudo_labels(pseudo.paths, pseudo.targets, pseudo.weights)
            self.dm.augment.update(pcfg.get("student_augment") or {})
        if self._done(k):
            log.info("round %d: finished earlier (DONE in %s); skipped", k, round_dir(self.out, k))
        else:
            last = round_dir(self.out, k) / "checkpoints" / "last.ckpt"
            resume = last if last.is_file() else None
            if k == 0 and resume is None and self.cfg.get("ckpt_path"):
                resume = Path(self.cfg.ckpt_path)  # Lightning's meaning, for the teacher's fit
            if resume:
                log.info("round %d: resuming the interrupted fit from %s", k, resume)
            model = _student_model(self.cfg, pcfg, self.out, k) if k > 0 else None
            callbacks = []
            if k < self.rounds:
                callbacks.append(
                    PseudoLabelCallback(
                        self.selection,
                        self.out,
                        next_round=k + 1,
                        include_test=pcfg.include_test,
                        accumulate=pcfg.accumulate,
                        tta_flip=pcfg.tta_flip,
                    )
                )
            fit_round(self.cfg, self.dm, k, self.out, callbacks, model=model, ckpt_path=resume)
        if k < self.rounds and not pseudo_manifest_path(self.out, k + 1).is_file():
            self._select_from_saved_teacher(k)

    def _select_from_saved_teacher(self, k: int) -> None:
        """Round k finished but round k+1's pseudo set is missing (teacher cache, a kill)."""
        pcfg = self.pcfg
        path = teacher_probs_path(self.out, k)
        probs = load_teacher_probs(path, pcfg.tta_flip, pcfg.include_test)
        if probs is None:
            best = round_dir(self.out, k) / "checkpoints" / "best.ckpt"
            log.info("round %d: predicting the pool with %s", k, best)
            probs = teacher_probs(load_classifier(best), self.dm, pcfg.tta_flip, pcfg.include_test)
            if rank_zero_only.rank == 0:
                save_teacher_probs(path, probs)
        if rank_zero_only.rank == 0:
            write_pseudo_set(
                self.out, k + 1, self.dm, probs, self.selection, pcfg.accumulate
            )

    def _finish(self) -> list[dict]:
        labeled = len(self.dm.splits.labeled)
        rows = [round_row(self.out, k, labeled) for k in range(self.rounds + 1)]
        if rank_zero_only.rank == 0:
            table = self.out / "rounds.csv"
            logged = len(_read_rows(table))  # rounds already in TensorBoard (a resumed run)
            write_rounds_csv(table, rows)
            writer = SummaryWriter(str(self.out / "tensorboard" / "rounds"))
            for row in rows[logged:]:
                for key, value in row.items():
                    if key != "round" and isinstance(value, int | float) and not math.isnan(value):
                        writer.add_scalar(f"rounds/{key}", value, row["round"])
            writer.close()
        return rows


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_rounds(cfg: DictConfig, datamodule: FERDataModule, output_dir: Path) -> list[dict]:
    """Run (or resume) every round of ``cfg`` in ``output_dir``; returns the rounds table."""
    return Rounds(cfg, datamodule, output_dir).run()
