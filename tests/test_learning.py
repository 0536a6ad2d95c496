"""The demo's teacher learns: a small synthetic set, the demo's model and recipe, a few epochs.

A regression check of the whole training path (data, augmentation, the pretrained
backbone and its fresh head, optimisation, checkpoint selection): a change that breaks
learning leaves the teacher at the majority-class baseline and fails here.
"""

from __future__ import annotations

import json

import numpy as np

from fer_lightning.data.splits import Splits
from fer_lightning.emotions import EMOTIONS
from tests.helpers.cli import train

SMALL = [
    "model.backbone=mobilenetv2_100",  # the demo's model and its ImageNet weights
    "model.weights=imagenet",
    "data.source.n_train=280",
    "data.source.n_test=70",
    "data.source.workers=1",
    "data.source.image_size=48",
    "data.image_size=48",
    "data.label_fraction=null",
    "pseudo_label=none",
    "trainer.max_epochs=4",
    "teacher_cache=false",
]


def majority_macro_f1(labels: np.ndarray) -> float:
    """Macro-F1 of always answering the most frequent class: only that class scores."""
    share = np.bincount(labels, minlength=len(EMOTIONS)).max() / len(labels)
    return 2 * share / (1 + share) / len(EMOTIONS)


def test_the_demo_teacher_learns_well_above_the_majority_baseline(tmp_path):
    train(tmp_path, *SMALL, "data.batch_size=32")
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "round_0" / "metrics.json").read_text())
    splits = Splits.load(run_dir / "splits")
    baseline = majority_macro_f1(splits.val.labels)  # ~0.08 with RAF-DB's proportions
    assert metrics["val/best_macro_f1"] >= 2 * baseline + 0.02, (metrics, baseline)
    assert metrics["test/macro_f1"] >= 2 * majority_macro_f1(splits.test.labels)
