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
from torch.utils.tensorboard import SummaryWriter

from fer_lightning.callbacks.pseudo_label import PseudoLabelCallback, pseudo_manifest_path
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.emotions import EMOTIONS
from fer_lightning.io import atomic_path
from fer_lightning.pseudo.manifest import read_pseudo_manifest
from fer_lightning.pseudo.selection import SelectionConfig
from fer_lightning.training import fit_round, round_dir

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


def run_rounds(cfg: DictConfig, datamodule: FERDataModule, output_dir: Path) -> list[dict]:
    """Fit the teacher and ``pseudo_label.rounds`` students; returns the rounds table rows."""
    pcfg = cfg.get("pseudo_label") or OmegaConf.create({"rounds": 0})
    rounds = int(pcfg.rounds)
    selection = selection_config(pcfg) if rounds > 0 else None  # fail before any training
    if rounds > 0 and pcfg.student_init not in STUDENT_INITS:
        raise ValueError(
            f"pseudo_label.student_init must be one of {STUDENT_INITS}, got {pcfg.student_init!r}"
        )
    if rounds > 0 and pcfg.include_test:
        log.warning(
            "pseudo_label.include_test=true: the teacher labels the TEST images too "
            "(transductive); test metrics are then not comparable with inductive runs"
        )
    datamodule.prepare_data()
    datamodule.setup("fit")
    labeled = len(datamodule.splits.labeled)
    rows: list[dict] = []
    writer = SummaryWriter(str(output_dir / "tensorboard" / "rounds"))
    for k in range(rounds + 1):
        model = None
        if k > 0:
            pseudo = read_pseudo_manifest(pseudo_manifest_path(output_dir, k))
            datamodule.set_pseudo_labels(pseudo.paths, pseudo.targets, pseudo.weights)
            datamodule.augment.update(pcfg.get("student_augment") or {})
            model = _student_model(cfg, pcfg, output_dir, k)
        callbacks = []
        if k < rounds:
            callbacks.append(
                PseudoLabelCallback(
                    selection,
                    output_dir,
                    next_round=k + 1,
                    class_score=pcfg.class_score,
                    include_test=pcfg.include_test,
                    accumulate=pcfg.accumulate,
                    tta_flip=pcfg.tta_flip,
                )
            )
        fit_round(cfg, datamodule, k, output_dir, callbacks, model=model)
        rows.append(round_row(output_dir, k, labeled))
        write_rounds_csv(output_dir / "rounds.csv", rows)
        for key, value in rows[-1].items():
            if key != "round" and isinstance(value, int | float) and not math.isnan(value):
                writer.add_scalar(f"rounds/{key}", value, k)
        writer.flush()
    writer.close()
    return rows
