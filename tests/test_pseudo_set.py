"""Pseudo-label manifests: round trip, soft targets, accumulation, atomic writes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from fer_lightning.pseudo import pseudo_set as pm
from fer_lightning.pseudo.selection import select
from fer_lightning.pseudo.strategies import Threshold


def _pseudo(soft: bool) -> pm.PseudoSet:
    probs = torch.tensor([[0.95, 0.05] + [0.0] * 5, [0.1, 0.0, 0.9] + [0.0] * 4, [1 / 7] * 7])
    sel = select(probs, Threshold(threshold=0.9), soft=soft, temperature=0.5 if soft else 1.0)
    return pm.PseudoSet.from_selection(np.array(["a.jpg", "b.jpg", "c.jpg"]), sel)


@pytest.mark.parametrize("soft", [False, True])
def test_round_trip_keeps_targets_and_weights(tmp_path, soft):
    pseudo = _pseudo(soft)
    path = tmp_path / "round_1.csv"
    pm.write_pseudo_manifest(path, pseudo, 1, soft, true_labels=np.array([0, 1]))
    back = pm.read_pseudo_manifest(path)
    assert back.paths.tolist() == ["a.jpg", "b.jpg"]
    np.testing.assert_allclose(back.targets, pseudo.targets, atol=1e-6)
    np.testing.assert_allclose(back.weights, [0.95, 0.9], atol=1e-6)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["true_label"] for r in rows] == ["0", "1"]
    assert ("prob_fear" in rows[0]) == soft


def test_accumulate_prefers_the_newer_round():
    old = pm.PseudoSet(
        np.array(["a.jpg", "z.jpg"]),
        np.array([3, 4]),
        np.eye(7, dtype=np.float32)[[3, 4]],
        np.ones(2, np.float32),
        np.ones(2, np.float32),
    )
    merged = _pseudo(False).merged_over(old)
    assert merged.paths.tolist() == ["z.jpg", "a.jpg", "b.jpg"]
    assert merged.labels.tolist() == [4, 0, 2]


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "round_1.csv"
    real_writer = csv.writer

    class Exploding:
        def __init__(self, f):
            self.inner, self.rows = real_writer(f), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows == 3:
                raise OSError("disk full")
            self.inner.writerow(row)

    monkeypatch.setattr(pm.csv, "writer", Exploding)
    with pytest.raises(OSError, match="disk full"):
        pm.write_pseudo_manifest(path, _pseudo(False), 1, soft=False)
    assert list(tmp_path.iterdir()) == []
