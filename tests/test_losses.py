"""The soft-target loss agrees with torch's cross-entropy and honours weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_lightning.models.losses import soft_cross_entropy


def test_one_hot_targets_match_cross_entropy_with_smoothing_and_class_weights():
    torch.manual_seed(0)
    logits = torch.randn(16, 7)
    labels = torch.randint(0, 7, (16,))
    cw = torch.rand(7) + 0.5
    ours = soft_cross_entropy(logits, F.one_hot(labels, 7).float(), None, 0.1, cw)
    ref = F.cross_entropy(logits, labels, weight=cw, label_smoothing=0.1, reduction="none").mean()
    torch.testing.assert_close(ours, ref)


def test_soft_targets_and_sample_weights():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    weights = torch.tensor([0.0, 2.0])
    log_p = logits.log_softmax(-1)
    expected = (2.0 * -log_p[1, 1]) / 2
    torch.testing.assert_close(soft_cross_entropy(logits, targets, weights), expected)
    unweighted = (-(targets * log_p).sum(-1)).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, targets), unweighted)
