"""Selection strategies: corrected teacher probabilities in, a keep-mask over the pool out.

A strategy is one small class named by ``_target_`` in ``conf/pseudo_label/<name>.yaml``
(``pseudo_label.strategy``) and built with Hydra's ``instantiate``; a strategy of your own
is one class subclassing :class:`Strategy` in a module on ``PYTHONPATH`` plus one YAML in
your ``--config-dir``. Its constructor arguments are its options (an option it does not
take is an error naming the ones it does), and it declares the run-time inputs it needs
(:attr:`Strategy.needs_validation`, :attr:`Strategy.needs_labeled_counts`), so the
pseudo-labeling step supplies exactly those and a misconfigured one fails before training.

The shared machinery stays in :mod:`fer_lightning.pseudo.selection`: the probability
corrections (``calibrate``, ``debias``) before any strategy, the caps (``max_per_class``,
``no_skew``) and :func:`~fer_lightning.pseudo.selection.finalize` after it. Ties are broken
deterministically everywhere: by confidence descending, then pool index ascending.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

MAPPINGS: tuple[str, ...] = ("linear", "convex")
TARGETS: tuple[str, ...] = ("uniform", "balance_labeled")
CLASS_SCORES: tuple[str, ...] = ("precision", "confidence")

DEFAULT_THRESHOLD = 0.9
# Lowest per-class threshold: with 7 classes a row at 0.5 still puts most of its mass on
# one class. A config value; FlexMatch effectively uses 0, Ada-CM starts near 0.8.
DEFAULT_FLOOR = 0.5
DEFAULT_ALPHA = 1 / 3  # CReST's rate exponent


@dataclass(frozen=True)
class Inputs:
    """The run-time tensors a strategy may read (``None`` unless it declared the need).

    ``val_probs`` [V, C] are the teacher's validation probabilities after the same
    corrections as the pool's, ``val_labels`` [V] their labels, ``labeled_counts`` [C] the
    labeled split's class counts.
    """

    val_probs: Tensor | None = None
    val_labels: Tensor | None = None
    labeled_counts: Tensor | None = None


class Strategy:
    """Base class: subclasses implement :meth:`keep` and check their options on construction."""

    @property
    def needs_validation(self) -> bool:
        """Whether :meth:`keep` reads ``inputs.val_probs`` and ``inputs.val_labels``."""
        return False

    @property
    def needs_labeled_counts(self) -> bool:
        """Whether :meth:`keep` reads ``inputs.labeled_counts``."""
        return False

    def keep(self, probs: Tensor, inputs: Inputs) -> Tensor:
        """Bool [N]: the pool rows to keep, from probabilities ``probs`` [N, C]."""
        raise NotImplementedError


def build_strategy(node: Strategy | Mapping, key: str = "pseudo_label.strategy") -> Strategy:
    """A :class:`Strategy` from its config node (``_target_`` plus its options).

    Errors (ValueError) name ``key``, the class and the options it takes, so a typo or an
    option of another strategy fails before training instead of being ignored.
    """
    if isinstance(node, Strategy):
        return node
    from hydra.errors import InstantiationException
    from hydra.utils import get_class, instantiate

    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ValueError(
            f"{key} must name its class with _target_ (e.g. "
            f"{{_target_: fer_lightning.pseudo.strategies.TopK, fraction: 0.3}}); got {node!r}"
        )
    target = str(node["_target_"])
    try:
        cls = get_class(target)
    except Exception as err:  # ImportError, AttributeError, Hydra's wrapping of both
        raise ValueError(
            f"{key}._target_={target}: cannot import it ({err.__class__.__name__}); a strategy "
            "of your own must be importable (its module on PYTHONPATH)"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(
            f"{key}._target_={target} is not a fer_lightning.pseudo.strategies.Strategy subclass"
        )
    params = list(inspect.signature(cls).parameters)
    unknown = sorted(set(node) - {"_target_"} - set(params))
    if unknown:
        raise ValueError(
            f"{key}: {cls.__name__} does not take {', '.join(unknown)} "
            f"(its options: {', '.join(params) or 'none'})"
        )
    try:
        return instantiate(dict(node))
    except InstantiationException as err:  # Hydra wraps the class's own ValueError
        raise ValueError(f"{key}: {cls.__name__}: {err.__cause__ or err}") from None


def check_choice(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def check_unit(name: str, value: object) -> None:
    if not number_in(value, 0.0, 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def number_in(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


# ---------------------------------------------------------------------------- threshold


@dataclass(frozen=True)
class Threshold(Strategy):
    """Keep rows whose max probability is ``>= threshold`` (Pseudo-Label; FixMatch: 0.95).

    Simple, but on imbalanced data the majority class takes most confident rows.
    """

    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        check_unit("threshold", self.threshold)

    def keep(self, probs: Tensor, inputs: Inputs) -> Tensor:
        return threshold_mask(probs, self.threshold)


def threshold_mask(probs: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
    """Rows whose max probability is ``>= threshold`` (compared in ``probs``' dtype)."""
    return probs.max(dim=1).values >= threshold


# ---------------------------------------------------------------------- class threshold


@dataclass(frozen=True)
class ClassThreshold(Strategy):
    """Per-class thresholds from how well the teacher knows each class (FlexMatch, Ada-CM).

    ``beta_c = score_c / max(score)``, ``tau_c = max(floor, M(beta_c) * threshold)`` with
    ``M(b) = b`` (``mapping="linear"``) or FlexMatch's ``M(b) = b / (2 - b)``
    (``"convex"``); ``score`` is the teacher's per-class validation precision
    (``class_score="precision"``) or its mean pool confidence per predicted class. A row is
    kept when its max probability is ``>= tau_{argmax}``, so classes the teacher knows less
    well get lower thresholds and are not starved.
    """

    threshold: float = DEFAULT_THRESHOLD
    floor: float = DEFAULT_FLOOR
    mapping: str = "linear"
    class_score: str = "precision"

    def __post_init__(self) -> None:
        check_unit("threshold", self.threshold)
        check_choice("mapping", self.mapping, MAPPINGS)
        check_choice("class_score", self.class_score, CLASS_SCORES)
        if not number_in(self.floor, 0.0, self.threshold):
            raise ValueError(f"floor must be in [0, threshold={self.threshold}], got {self.floor}")

    @property
    def needs_validation(self) -> bool:
        return self.class_score == "precision"

    def keep(self, probs: Tensor, inputs: Inputs) -> Tensor:
        if self.class_score == "precision":
            score = per_class_precision(inputs.val_probs, inputs.val_labels)
        else:
            score = per_class_mean_confidence(probs)
        thresholds = class_thresholds(self.threshold, score, self.floor, self.mapping)
        return class_threshold_mask(probs, thresholds)


def class_thresholds(
    tau: float,
    class_score: Tensor,
    floor: float = DEFAULT_FLOOR,
    mapping: str = "linear",
) -> Tensor:
    """Per-class thresholds ``tau_c = max(floor, M(score_c / max(score)) * tau)``, float32 [C].

    ``M(b) = b`` for ``"linear"``, ``b / (2 - b)`` for ``"convex"`` (FlexMatch), which
    lowers thresholds of weaker classes further. The best-known class keeps ``tau``;
    a class with score 0 (e.g. never predicted) gets ``floor``, as do all when every
    score is 0.
    """
    check_choice("mapping", mapping, MAPPINGS)
    score = torch.as_tensor(class_score, dtype=torch.float64)
    top = score.max()
    beta = score / top if top > 0 else torch.zeros_like(score)
    mapped = beta if mapping == "linear" else beta / (2.0 - beta)
    return (mapped * tau).clamp(min=floor).float()


def class_threshold_mask(probs: Tensor, thresholds: Tensor) -> Tensor:
    """Rows whose max probability is ``>= thresholds[argmax]``."""
    conf, pred = probs.max(dim=1)
    return conf >= thresholds.to(device=probs.device, dtype=probs.dtype)[pred]


def correct_and_known(pred: Tensor, true: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per predicted class: rows whose truth is known (``>= 0``), and how many are right."""
    known = true >= 0
    pred, true = pred[known], true[known]
    known_per_class = torch.bincount(pred, minlength=num_classes)
    correct = torch.bincount(pred[pred == true], minlength=num_classes)
    return correct, known_per_class


def per_class_precision(probs: Tensor, labels: Tensor) -> Tensor:
    """Teacher precision per predicted class on labeled (validation) rows, float32 [C].

    A class never predicted scores 0, so :func:`class_thresholds` gives it the floor.
    Rows labelled ``-1`` (unknown) are ignored.
    """
    correct, known = correct_and_known(probs.argmax(dim=1), labels, probs.shape[1])
    return (correct / known.clamp(min=1)).float()


def per_class_mean_confidence(probs: Tensor) -> Tensor:
    """Mean max probability over the rows predicted as each class (0 if none), float32 [C]."""
    num_classes = probs.shape[1]
    conf, pred = probs.max(dim=1)
    total = torch.zeros(num_classes, dtype=torch.float64, device=probs.device)
    total.index_add_(0, pred, conf.double())
    return (total / torch.bincount(pred, minlength=num_classes).clamp(min=1)).float()


# --------------------------------------------------------------------------------- topk


@dataclass(frozen=True)
class TopK(Strategy):
    """Class-balanced: per predicted class, its most confident rows up to a quota.

    Give exactly one of ``k``, ``fraction``, ``budget``. Without ``target`` the quota of
    class ``c`` is ``k``, or ``round(fraction * rows predicted c)``. With ``target`` a
    total budget (``budget``, or ``k * C``, or ``round(fraction * N)``) is split by
    :func:`class_quotas`: ``"uniform"`` aims the pseudo set at equal class counts,
    ``"balance_labeled"`` at an even ``labeled + pseudo``. Rows below ``min_confidence``
    are never kept and do not count as available.
    """

    k: int | None = None
    fraction: float | None = None
    budget: int | None = None
    target: str | None = None
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        sizes = [n for n in ("k", "fraction", "budget") if getattr(self, n) is not None]
        if len(sizes) != 1:
            raise ValueError(f"TopK needs exactly one of k, fraction, budget; got {sizes}")
        for name in ("k", "budget"):
            if getattr(self, name) is not None:
                check_count(name, getattr(self, name))
        if self.fraction is not None:
            check_unit("fraction", self.fraction)
        size = sizes[0]
        if getattr(self, size) == 0:  # refused before a teacher trains, not blamed on it
            raise ValueError(
                f"{size}=0 selects no pseudo labels, so every student would train on the "
                f"labeled set alone; give {size} > 0, or pseudo_label.rounds=0 for the teacher only"
            )
        check_unit("min_confidence", self.min_confidence)
        if self.target is not None:
            check_choice("target", self.target, TARGETS)
        elif self.budget is not None:
            raise ValueError("budget is a total over classes: it needs a target")

    @property
    def needs_labeled_counts(self) -> bool:
        return self.target == "balance_labeled"

    def keep(self, probs: Tensor, inputs: Inputs) -> Tensor:
        return topk_mask(
            probs,
            k=self.k,
            fraction=self.fraction,
            budget=self.budget,
            target=self.target,
            labeled_counts=inputs.labeled_counts,
            min_confidence=self.min_confidence,
        )


def class_quotas(available: Tensor, budget: int, labeled_counts: Tensor | None = None) -> Tensor:
    """Per-class pseudo quotas that make ``labeled + pseudo`` as even as the budget allows [C].

    Water-filling: find the highest level ``h`` with ``sum_c max(h - labeled_c, 0) <=
    budget`` and give each class ``h - labeled_c`` (never below 0), one more to the lowest
    classes (ties: lower index) while budget remains, then cap each at ``available[c]``
    (rows the teacher predicts as ``c``). A class short of candidates leaves its share
    **unspent**: handing it to the others would give most to the classes that already have
    the most, the opposite of what the quotas are for. ``labeled_counts=None`` means zeros
    (equal quotas).
    """
    avail = torch.as_tensor(available, dtype=torch.int64)
    base = (
        torch.zeros_like(avail)
        if labeled_counts is None
        else torch.as_tensor(labeled_counts, dtype=torch.int64, device=avail.device)
    )
    budget = int(budget)

    def filled(level: int) -> Tensor:
        return (level - base).clamp(min=0)

    lo, hi = 0, int(base.max()) + budget if avail.numel() else 0
    while lo < hi:  # largest level whose fill fits the budget
        mid = (lo + hi + 1) // 2
        if int(filled(mid).sum()) <= budget:
            lo = mid
        else:
            hi = mid - 1
    quotas = filled(lo)
    rest = budget - int(quotas.sum())
    growing = (filled(lo + 1) > quotas).nonzero().flatten()[:rest]
    quotas[growing] += 1
    return quotas.minimum(avail)


def topk_mask(
    probs: Tensor,
    *,
    k: int | None = None,
    fraction: float | None = None,
    budget: int | None = None,
    target: str | None = None,
    labeled_counts: Tensor | None = None,
    min_confidence: float = 0.0,
) -> Tensor:
    """:class:`TopK`'s mask as a pure function (see the class for the rules)."""
    num_rows, num_classes = probs.shape
    conf, pred = probs.max(dim=1)
    eligible = conf >= min_confidence
    if target is None:
        if k is not None:
            quotas = torch.full((num_classes,), k, dtype=torch.int64, device=probs.device)
        else:
            predicted = torch.bincount(pred, minlength=num_classes)
            quotas = torch.floor(predicted * float(fraction) + 0.5).long()
    else:
        if budget is None:
            budget = k * num_classes if k is not None else math.floor(fraction * num_rows + 0.5)
        available = torch.bincount(pred[eligible], minlength=num_classes)
        base = labeled_counts if target == "balance_labeled" else None
        quotas = class_quotas(available, budget, base)
    # Eligible rows are a confidence prefix of each class, so ranks over all rows work.
    return eligible & (_rank_within_class(conf, pred, num_classes) < quotas[pred])


# -------------------------------------------------------------------------------- crest


@dataclass(frozen=True)
class Crest(Strategy):
    """CReST's class-rebalancing rate (Wei et al. CVPR 2021).

    Per predicted class, the most confident fraction ``(N_{C+1-l} / N_1) ** alpha`` of its
    rows, where ``l`` is the class's rank by **labeled count** (1 = the most frequent), so
    the rarest emotion keeps all its predictions and the most frequent the smallest share.
    Ranking within each class, never one absolute confidence: a weak teacher is rarely
    confident on the hard emotions, and a single floor would leave them with nothing.
    """

    alpha: float = DEFAULT_ALPHA
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if not number_in(self.alpha, 0, 4):
            raise ValueError(f"alpha must be a number in [0, 4], got {self.alpha!r}")
        check_unit("min_confidence", self.min_confidence)

    @property
    def needs_labeled_counts(self) -> bool:
        return True

    def keep(self, probs: Tensor, inputs: Inputs) -> Tensor:
        return crest_mask(probs, inputs.labeled_counts, self.alpha, self.min_confidence)


def crest_rates(labeled_counts: Tensor, alpha: float = DEFAULT_ALPHA) -> Tensor:
    """CReST's per-class keep rate ``(N_{C+1-l} / N_1) ** alpha``, float64 [C].

    Classes are ranked by their labeled count (``l = 1`` the most frequent; ties by class
    index), not by class index as in USB's port, which only holds for CIFAR-LT: the class
    at rank ``l`` takes the count at the mirrored rank ``C + 1 - l`` over the largest. The
    rarest class keeps everything (rate 1); ``alpha = 0`` keeps everything everywhere.
    """
    counts = torch.as_tensor(labeled_counts, dtype=torch.float64).clamp(min=1)
    order = torch.sort(-counts, stable=True).indices  # rank l - 1 -> class
    mirrored = counts[order].flip(0)  # N_{C+1-l} for l = 1..C
    rates = torch.empty_like(counts)
    rates[order] = (mirrored / counts.max()).pow(float(alpha))
    return rates


def crest_mask(
    probs: Tensor, labeled_counts: Tensor, alpha: float = DEFAULT_ALPHA, min_confidence: float = 0.0
) -> Tensor:
    """Per predicted class, its most confident ``round(rate_c * rows predicted c)`` rows."""
    conf, pred = probs.max(dim=1)
    predicted = torch.bincount(pred, minlength=probs.shape[1]).double()
    rates = crest_rates(labeled_counts, alpha).to(probs.device)
    quotas = torch.floor(predicted * rates + 0.5).long()
    return keep_top_per_class(probs, conf >= min_confidence, quotas)


# ------------------------------------------------------------------------------ ranking


def keep_top_per_class(probs: Tensor, keep: Tensor, caps: Tensor) -> Tensor:
    """``keep`` less, per predicted class, every kept row beyond its ``caps[c]`` most confident."""
    conf, pred = probs.max(dim=1)
    num_classes = probs.shape[1]
    conf_kept = torch.where(keep, conf, conf.new_full((), -1.0))  # unkept rows rank last
    return keep & (_rank_within_class(conf_kept, pred, num_classes) < caps.to(pred.device)[pred])


def _rank_within_class(conf: Tensor, pred: Tensor, num_classes: int) -> Tensor:
    """Each row's 0-based rank in its predicted class: confidence desc, then index asc."""
    by_conf = torch.sort(conf, descending=True, stable=True).indices
    order = by_conf[torch.sort(pred[by_conf], stable=True).indices]
    sizes = torch.bincount(pred, minlength=num_classes)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty_like(pred)
    rank[order] = torch.arange(pred.numel(), device=pred.device) - starts[pred[order]]
    return rank
