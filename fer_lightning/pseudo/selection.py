"""Pseudo-label selection: teacher probabilities in, the pool rows to add (and how) out.

Pure torch, no Lightning, so every rule is unit-testable on hand-made tensors.

:func:`select` is the one entry point. It corrects the teacher's probabilities, asks the
configured strategy (:mod:`fer_lightning.pseudo.strategies`: ``Threshold``,
``ClassThreshold``, ``TopK``, ``Crest`` or a class of your own) for a keep-mask, applies
the caps shared by every strategy and turns the mask into a :class:`Selection` (hard or
soft targets, weights) with :func:`finalize`.

Before any strategy the teacher's probabilities can be corrected for two known faults
of pseudo-labels on imbalanced data: ``calibrate`` fits one temperature on the validation
split (temperature scaling, Guo et al. 2017), so a threshold means the confidence it
says; ``debias`` divides by the labeled class prior to the power ``debias`` (post-hoc
logit adjustment, Menon et al. 2021; DebiasPL, Wang et al. CVPR 2022), so a teacher
trained on mostly happy faces stops calling every confident face happy. Both change the
probabilities every later step sees: labels, confidences, weights and soft targets.

After any strategy, ``max_per_class`` caps each predicted class, and ``no_skew`` trims the
kept rows of any emotion whose share of labeled + pseudo would exceed the labeled set's
largest share (least confident first): pseudo labels exist to fight the imbalance, so a
budget that cannot be spent on the scarce emotions is left unspent rather than handed to
the ones that already have the most.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from fer_lightning.pseudo.strategies import (
    Inputs,
    Strategy,
    Threshold,
    check_choice,
    check_count,
    correct_and_known,
    keep_top_per_class,
    number_in,
)

WEIGHTINGS: tuple[str, ...] = ("confidence", "none")


@dataclass(frozen=True)
class Selection:
    """The chosen pool rows and what the student trains them with (M rows, C classes)."""

    index: Tensor  # int64 [M], indices into the pool, ascending
    labels: Tensor  # int64 [M], hard pseudo label (argmax)
    targets: Tensor  # float32 [M, C], one-hot (hard) or sharpened teacher probs (soft)
    weights: Tensor  # float32 [M], per-sample loss weight: confidence or 1
    confidence: Tensor  # float32 [M], max teacher probability
    calibration: float | None = None  # the temperature fitted on validation, if calibrated

    def __len__(self) -> int:
        return int(self.index.numel())


@dataclass(frozen=True)
class SelectionConfig:
    """A strategy plus the options every strategy shares, all validated.

    Shaped like ``conf/pseudo_label/*.yaml`` less the rounds' own keys; build it from loose
    keyword arguments with :meth:`from_options`, which names the valid ones on a typo.
    """

    strategy: Strategy = field(default_factory=Threshold)
    soft: bool = False
    temperature: float = 1.0
    weighting: str = "confidence"
    max_per_class: int | None = None
    calibrate: bool = False
    debias: float = 0.0
    no_skew: bool = False  # conf/pseudo_label/_base_.yaml turns it on for every strategy

    @classmethod
    def from_options(cls, strategy: Strategy, **options: object) -> SelectionConfig:
        """Like the constructor, but an unknown option name is a ValueError listing them."""
        names = [f.name for f in fields(cls) if f.name != "strategy"]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(
                f"unknown selection option(s) {unknown}; valid options: {', '.join(names)}"
                " (plus the run-time tensors val_probs, val_labels and labeled_counts;"
                " a strategy's own options go in its constructor)"
            )
        return cls(strategy=strategy, **options)

    @property
    def needs_validation(self) -> bool:
        """Whether :func:`select` needs the teacher's validation probabilities and labels."""
        return self.calibrate or self.strategy.needs_validation

    @property
    def needs_labeled_counts(self) -> bool:
        """Whether :func:`select` needs the labeled set's per-class counts."""
        return self.debias > 0 or self.no_skew or self.strategy.needs_labeled_counts

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, Strategy):
            raise ValueError(
                f"strategy must be a fer_lightning.pseudo.strategies.Strategy, "
                f"got {self.strategy!r}"
            )
        if self.max_per_class is not None:
            check_count("max_per_class", self.max_per_class)
        if not number_in(self.temperature, 1e-9, math.inf):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not self.soft and self.temperature != 1.0:
            raise ValueError("temperature only applies to soft labels; set soft=true")
        check_choice("weighting", self.weighting, WEIGHTINGS)
        for name in ("soft", "calibrate", "no_skew"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not number_in(self.debias, 0, 4):
            raise ValueError(f"debias must be a number in [0, 4] (0: off), got {self.debias!r}")


def no_skew_caps(kept: Tensor, labeled_counts: Tensor) -> Tensor:
    """Per-class caps on ``kept`` pseudo counts so no class's share of labeled + pseudo
    exceeds the labeled set's largest share, int64 [C].

    With ``L`` labeled images, ``m`` the largest labeled count and ``Q`` the pseudo total,
    class ``c`` may have at most ``floor(m (L + Q) / L) - labeled_c``. Trimming lowers
    ``Q``, so the caps are iterated to their fixed point (``Q`` only falls, so it ends).
    """
    kept = torch.as_tensor(kept, dtype=torch.int64)
    labeled = torch.as_tensor(labeled_counts, dtype=torch.int64, device=kept.device)
    total, largest = int(labeled.sum()), int(labeled.max()) if labeled.numel() else 0
    if total == 0:
        return kept
    pseudo = int(kept.sum())
    while True:
        trimmed = kept.minimum(((largest * (total + pseudo)) // total - labeled).clamp(min=0))
        if int(trimmed.sum()) == pseudo:
            return trimmed
        pseudo = int(trimmed.sum())


# ----------------------------------------------------------------------------- finalize


def sharpen(probs: Tensor, temperature: float) -> Tensor:
    """``p^(1/T)`` renormalised per row: ``T < 1`` sharpens, ``T = 1`` keeps ``p``."""
    return torch.softmax(probs.log() / temperature, dim=1)


def finalize(
    probs: Tensor,
    keep: Tensor,
    *,
    soft: bool = False,
    temperature: float = 1.0,
    weighting: str = "confidence",
) -> Selection:
    """Turn a keep-mask into a :class:`Selection`.

    Targets are one-hot, or the teacher's probabilities sharpened with ``temperature``
    when ``soft``; weights are the confidence, or 1 with ``weighting="none"``.
    """
    check_choice("weighting", weighting, WEIGHTINGS)
    num_classes = probs.shape[1]
    index = keep.nonzero().flatten()
    rows = probs[index]
    conf, labels = rows.max(dim=1)
    if soft:
        targets = sharpen(rows.double(), temperature)
    else:
        targets = torch.nn.functional.one_hot(labels, num_classes)
    conf = conf.float()
    return Selection(
        index=index,
        labels=labels,
        targets=targets.float(),
        weights=conf.clone() if weighting == "confidence" else torch.ones_like(conf),
        confidence=conf,
    )


def fit_temperature(probs: Tensor, labels: Tensor) -> float:
    """The temperature ``T`` minimising the NLL of ``labels`` under ``softmax(log p / T)``.

    Temperature scaling (Guo et al. 2017): one parameter, fitted on held-out (validation)
    rows, so it changes how confident the teacher is, never which class it predicts.
    Rows labelled ``-1`` are ignored; with no labelled row it returns 1.
    """
    known = labels >= 0
    if not bool(known.any()):
        return 1.0
    log_p = probs[known].double().clamp_min(1e-12).log()
    target = labels[known].long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(log_p / log_t.exp(), target)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(nll)
    return float(log_t.detach().clamp(math.log(0.05), math.log(20.0)).exp())


def debiased(probs: Tensor, class_counts: Tensor, strength: float) -> Tensor:
    """``p_c / prior_c^strength``, renormalised: post-hoc logit adjustment by the class prior.

    A teacher trained on imbalanced labels carries their prior in its posteriors; dividing
    it out (strength 1, Menon et al. 2021) estimates the class-balanced posterior, so the
    majority class no longer takes every confident row (DebiasPL, Wang et al. 2022).
    """
    prior = torch.as_tensor(class_counts, dtype=torch.float64).clamp(min=1)
    prior = (prior / prior.sum()).to(probs.device)
    scaled = probs.double() * prior.pow(-float(strength))
    return (scaled / scaled.sum(dim=1, keepdim=True)).to(probs.dtype)


def select(
    probs: Tensor,
    strategy: Strategy | SelectionConfig,
    *,
    val_probs: Tensor | None = None,
    val_labels: Tensor | None = None,
    labeled_counts: Tensor | None = None,
    **options: object,
) -> Selection:
    """Select pseudo labels from teacher probabilities ``probs`` [N, C] (rows sum to 1).

    ``strategy`` is a :class:`~fer_lightning.pseudo.strategies.Strategy` with the shared
    options as keyword arguments, or a ready :class:`SelectionConfig`. The run-time tensors
    are given exactly when the configuration needs them: ``val_probs`` [V, C] with
    ``val_labels`` [V] (the teacher on the validation split) for ``calibrate`` and
    strategies that read validation, ``labeled_counts`` [C] for ``debias``, ``no_skew``
    and strategies that read it. An empty selection is valid.
    """
    if isinstance(strategy, SelectionConfig):
        if options:
            raise ValueError("pass options either in the SelectionConfig or as kwargs, not both")
        cfg = strategy
    else:
        cfg = SelectionConfig.from_options(strategy, **options)
    _check_probs(probs)
    num_classes = probs.shape[1]
    _check_runtime("val_probs", val_probs, cfg.needs_validation, (-1, num_classes))
    _check_runtime("val_labels", val_labels, cfg.needs_validation, (-1,))
    _check_runtime("labeled_counts", labeled_counts, cfg.needs_labeled_counts, (num_classes,))
    temperature = fit_temperature(val_probs, val_labels) if cfg.calibrate else None

    def corrected(p: Tensor) -> Tensor:
        if temperature is not None:
            p = sharpen(p.clamp_min(1e-12), temperature)
        return debiased(p, labeled_counts, cfg.debias) if cfg.debias > 0 else p

    probs = corrected(probs)
    inputs = Inputs(
        val_probs=corrected(val_probs) if cfg.strategy.needs_validation else None,
        val_labels=val_labels if cfg.strategy.needs_validation else None,
        labeled_counts=labeled_counts if cfg.strategy.needs_labeled_counts else None,
    )
    keep = cfg.strategy.keep(probs, inputs)
    if keep.shape != (probs.shape[0],) or keep.dtype != torch.bool:
        raise ValueError(
            f"{type(cfg.strategy).__name__}.keep must return a bool tensor of shape "
            f"({probs.shape[0]},), got {keep.dtype} {tuple(keep.shape)}"
        )
    if cfg.max_per_class is not None:
        keep = keep_top_per_class(probs, keep, torch.full((num_classes,), cfg.max_per_class))
    if cfg.no_skew:
        kept = torch.bincount(probs.argmax(dim=1)[keep], minlength=num_classes)
        keep = keep_top_per_class(probs, keep, no_skew_caps(kept, labeled_counts))
    sel = finalize(probs, keep, soft=cfg.soft, temperature=cfg.temperature, weighting=cfg.weighting)
    return dataclasses.replace(sel, calibration=temperature)


def _check_probs(probs: Tensor) -> None:
    if probs.ndim != 2 or probs.shape[1] < 1 or not probs.is_floating_point():
        raise ValueError(f"probs must be a float tensor [N, C], got {tuple(probs.shape)}")
    if probs.numel() and (
        probs.min() < 0 or not torch.allclose(probs.sum(1), probs.new_ones(()), atol=1e-3)
    ):
        raise ValueError("probs rows must be probabilities summing to 1 (softmax, not logits)")


def _check_runtime(name: str, value: Tensor | None, needed: bool, shape: tuple[int, ...]) -> None:
    """A run-time tensor is given exactly when needed, with ``shape`` (-1: any length)."""
    if not needed:
        if value is not None:
            raise ValueError(f"{name} is not used by this configuration; do not pass it")
        return
    if value is None:
        raise ValueError(f"this configuration needs {name} (a tensor of shape {shape})")
    got = tuple(torch.as_tensor(value).shape)
    if len(got) != len(shape) or any(s not in (-1, g) for s, g in zip(shape, got, strict=True)):
        raise ValueError(f"{name} must have shape {shape}, got {got}")


# -------------------------------------------------------------------- scores and audit


def selection_stats(
    sel: Selection, num_classes: int, true_labels: Tensor | None = None
) -> dict[str, object]:
    """Per-class audit of a selection, for the per-round table.

    Keys: ``selected`` (int), ``count`` and ``mean_confidence`` (lists over classes; mean
    is nan for a class with nothing selected). With ``true_labels`` — the pool's hidden
    labels, aligned with the pool (indexed by ``sel.index``), ``-1`` = unknown — also
    ``known`` (selected rows with a known label, per pseudo class), ``precision`` per
    pseudo class and ``precision_overall`` (nan where no known label was selected).
    """
    count = torch.bincount(sel.labels, minlength=num_classes)
    total = torch.zeros(num_classes, dtype=torch.float64, device=sel.labels.device)
    total.index_add_(0, sel.labels, sel.confidence.double())
    stats: dict[str, object] = {
        "selected": len(sel),
        "count": count.tolist(),
        "mean_confidence": (total / count).tolist(),  # 0/0 -> nan
    }
    if true_labels is not None:
        true = torch.as_tensor(true_labels, device=sel.index.device)[sel.index]
        correct, known = correct_and_known(sel.labels, true, num_classes)
        stats["known"] = known.tolist()
        stats["precision"] = (correct.double() / known).tolist()
        n_known = int(known.sum())
        stats["precision_overall"] = int(correct.sum()) / n_known if n_known else math.nan
    return stats


def balance_audit(pseudo_counts: Tensor, labeled_counts: Tensor) -> dict[str, object]:
    """How a pseudo set changes the class balance of the training set.

    Keys: ``labeled_count`` (list over classes), ``largest_share_labeled`` (the most
    frequent class's share of the labeled set), ``largest_share_after`` (the most frequent
    class's share of labeled + pseudo), ``largest_after`` (that class's index), ``skewed``
    (the share grew: the pseudo set made the imbalance worse) and ``no_pseudo`` (scarce
    classes, below the mean labeled count, that the pseudo set left with nothing; a frequent
    class getting none is what balancing does).
    """
    pseudo = torch.as_tensor(pseudo_counts, dtype=torch.int64)
    labeled = torch.as_tensor(labeled_counts, dtype=torch.int64)
    after = labeled + pseudo
    share_labeled = int(labeled.max()) / max(1, int(labeled.sum()))
    share_after = int(after.max()) / max(1, int(after.sum()))
    return {
        "labeled_count": labeled.tolist(),
        "largest_share_labeled": share_labeled,
        "largest_share_after": share_after,
        "largest_after": int(after.argmax()),
        "skewed": share_after > share_labeled + 1e-9,
        "no_pseudo": ((pseudo == 0) & (labeled * len(labeled) < labeled.sum()))
        .nonzero()
        .flatten()
        .tolist(),
    }
