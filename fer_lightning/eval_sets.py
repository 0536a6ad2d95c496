"""Cross-dataset test sets: each round's best checkpoint also tested on other labeled sets.

FER papers report how a model trained on one data set does on others (train on RAF-DB,
test on FER2013, CK+, AffectNet). ``eval_sets.<name>`` is any data preset (``conf/data/``),
added from the command line with Hydra's package syntax::

    fer-train +data@eval_sets.fer2013=fer2013 eval_sets.fer2013.root=/data/fer2013.csv
    fer-train +data@eval_sets.ck=ckplus eval_sets.ck.root=/data/CK+48 eval_sets.ck.test_split=all

Its ``test_split`` is tested (``all``: every split of the source together, for the posed
sets that have no test split); its label budget, folds and validation settings are not
read. Metrics are ``test@<name>/...``; an emotion the set lacks is left out of its
macro-F1 and named in ``test@<name>/absent``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.manifest import Manifest
from fer_lightning.data.sources import check_images
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import DataError
from fer_lightning.results import prefix

log = logging.getLogger(__name__)

ALL_SPLITS = "all"


def read_eval_set(name: str, node: Mapping[str, Any] | DictConfig) -> Manifest:
    """The labeled faces of eval set ``name``: its source's ``test_split`` (or all splits)."""
    source = instantiate(node["source"])
    manifests = source(node["root"])
    split = str(node.get("test_split", "test"))
    if split == ALL_SPLITS:
        parts = list(manifests.values())
        manifest = parts[0]
        for part in parts[1:]:
            manifest = manifest.concat(part)
    elif split in manifests:
        manifest = manifests[split]
    else:
        raise DataError(
            f"eval_sets.{name}: split {split!r} not found in {node['root']}; found: "
            f"{', '.join(sorted(manifests)) or 'none'} (set eval_sets.{name}.test_split to "
            f"one of them, or {ALL_SPLITS!r} for every face)"
        )
    manifest = manifest.subset(np.flatnonzero(manifest.labels >= 0))
    manifest = check_images(
        manifest, str(node.get("on_corrupt", "fail")), int(node.get("min_image_side", 1))
    )
    if len(manifest) == 0:
        raise DataError(f"eval_sets.{name}: no labeled face in {node['root']} ({split})")
    log.info("eval set %s: %d faces (%s, %s)", name, len(manifest), node["root"], split)
    return manifest


def read_eval_sets(sets: Mapping[str, Any]) -> dict[str, Manifest]:
    """Every eval set's faces, read once at the start of a run."""
    return {str(name): read_eval_set(str(name), node) for name, node in sets.items()}


def _renamed(name: str, test: Mapping[str, float]) -> dict[str, Any]:
    """``test/...`` as ``test@name/...``, macro-F1 over the emotions the set holds."""
    out: dict[str, Any] = {prefix(name) + k[len("test/") :]: float(v) for k, v in test.items()}
    held = [e for e in EMOTIONS if test.get(f"test/support_{e}", 0) > 0]
    out[prefix(name) + "macro_f1"] = float(np.mean([test[f"test/f1_{e}"] for e in held]))
    out[prefix(name) + "absent"] = ",".join(e for e in EMOTIONS if e not in held)
    return out


def test_on_sets(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: FERDataModule,
    sets: Mapping[str, Manifest],
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Test the round's best checkpoint ``ckpt_path`` (None: the model as it is) on each set.

    The loggers are held back during these tests (their ``test/*`` values would overwrite
    the round's own); the renamed metrics are logged afterwards, at the same step.
    """
    metrics: dict[str, Any] = {}
    loggers = trainer.loggers
    for name, manifest in sets.items():
        trainer.loggers = []
        try:
            loader = datamodule.test_loader(manifest)
            test = trainer.test(model, dataloaders=loader, ckpt_path=ckpt_path, verbose=False)
        finally:
            trainer.loggers = loggers
        metrics |= _renamed(name, test[0])
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
    for logger in loggers:
        logger.log_metrics(scalars, step=trainer.global_step)
    return metrics
