"""Cross-entropy on probability targets: one loss for hard, soft and weighted labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of ``w_i * -sum_c cw_c * t_ic * log p_ic``.

    ``targets`` are probability rows (one-hot for hard labels); with one-hot targets
    and no weights this equals ``F.cross_entropy(..., label_smoothing=...)``.
    """
    num_classes = logits.shape[-1]
    if label_smoothing > 0:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if class_weights is not None:
        log_probs = log_probs * class_weights.to(log_probs)
    per_sample = -(targets * log_probs).sum(dim=-1)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()
