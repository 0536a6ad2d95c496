"""Pseudo-label selection: teacher probabilities in, the pool rows to add (and how) out.

Pure torch, no Lightning, so every rule is unit-testable on hand-made tensors.

Each strategy is a function ``probs -> keep-mask``; :func:`finalize` then turns any mask
into a :class:`Selection` (per-class cap, hard or soft targets, weights). :func:`select`
is the single validated entry point that Hydra configs drive.

Strategies (see the README's "Pseudo-label selection"):

``threshold``
    Keep rows whose max probability is ``>= threshold`` (Pseudo-Label; FixMatch uses 0.95,
    our default is 0.9). Simple, but on imbalanced data the majority class dominates.
``class_threshold``
    Per-class thresholds from how well the teacher knows each class (FlexMatch, Ada-CM):
    ``beta_c = score_c / max(score)``, ``tau_c = max(floor, M(beta_c) * threshold)`` with
    ``M(b) = b`` (``mapping="linear"``) or FlexMatch's ``M(b) = b / (2 - b)``
    (``mapping="convex"``). A row is kept when its max probability is ``>= tau_{argmax}``,
    so classes the teacher knows less well get lower thresholds and are not starved.
``topk``
    Class-balanced: per predicted class, the ``k`` most confident rows, or ``fraction``
    of that class's predicted rows (rounded to nearest), optionally only rows with max
    probability ``>= min_confidence``. With ``target`` the per-class quotas come from a
    total budget instead (see :func:`class_quotas`).
``crest``
    CReST's class-rebalancing rate (Wei et al. CVPR 2021): per predicted class, the most
    confident fraction ``(N_{C+1-l} / N_1) ** alpha`` of its rows, where ``l`` is the
    class's rank by **labeled count** (1 = the most frequent), so the rarest emotion keeps
    all its predictions and the most frequent the smallest share. Ranking within each
    class, never one absolute confidence: a weak teacher is rarely confident on the hard
    emotions, and a single floor would leave them with nothing.

Whatever the strategy, ``no_skew`` then trims the kept rows of any emotion whose share of
labeled + pseudo would exceed the labeled set's largest share (least confident first):
pseudo labels exist to fight the imbalance, so a budget that cannot be spent on the scarce
emotions is left unspent rather than handed to the ones that already have the most.

Before any strategy the teacher's probabilities can be corrected for two known faults
of pseudo-labels on imbalanced data: ``calibrate`` fits one temperature on the validation
split (temperature scaling, Guo et al. 2017), so a threshold means the confidence it
says; ``debias`` divides by the labeled class prior to the power ``debias`` (post-hoc
logit adjustment, Menon et al. 2021; DebiasPL, Wang et al. CVPR 2022), so a teacher
trained on mostly happy faces stops calling every confident face happy. Both change the
probabilities every later step sees: labels, confidences, weights and soft targets.

Ties are broken deterministically: by confidence descending, then pool index ascending.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

STRATEGIES: tuple[str, ...] = ("threshold", "class_threshold", "topk", "crest")
MAPPINGS: tuple[str, ...] = ("linear", "convex")
TARGETS: tuple[str, ...] = ("uniform", "balance_labeled")
WEIGHTINGS: tuple[str, ...] = ("confidence", "none")
CLASS_SCORES: tuple[str, ...] = ("precision", "confidence")

DEFAULT_THRESHOLD = 0.9
# Lowest per-class threshold: with 7 classes a row at 0.5 still puts most of its mass on
# one class. A config value; FlexMatch effectively uses 0, Ada-CM starts near 0.8.
DEFAULT_FLOOR = 0.5
DEFAULT_ALPHA = 1 / 3  # CReST's rate exponent

# Options each strategy reads, beyond the shared ones (soft, temperature, weighting,
# max_per_class). Setting an option the chosen strategy ignores is an error, so a sweep
# over it cannot silently produce identical runs.
_STRATEGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "threshold": ("threshold",),
    "class_threshold": ("threshold", "floor", "mapping", "class_score"),
    "topk": ("k", "fraction", "budget", "target", "min_confidence"),
    "crest": ("alpha", "min_confidence"),
}


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
    """Validated selection options, shaped like ``conf/pseudo_label/*.yaml``.

    Strategy-specific options default to ``None`` and are filled with their defaults
    for the strategy that reads them; setting one the strategy ignores raises.
    Build it from loose keyword arguments with :meth:`from_options`.
    """

    strategy: str = "threshold"
    threshold: float | None = None
    floor: float | None = None
    mapping: str | None = None
    class_score: str | None = None
    k: int | None = None
    fraction: float | None = None
    budget: int | None = None
    target: str | None = None
    min_confidence: float | None = None
    alpha: float | None = None
    soft: bool = False
    temperature: float = 1.0
    weighting: str = "confidence"
    max_per_class: int | None = None
    calibrate: bool = False
    debias: float = 0.0
    no_skew: bool = False  # conf/pseudo_label/_base_.yaml turns it on for every strategy

    @classmethod
    def from_options(cls, strategy: str = "threshold", **options: object) -> SelectionConfig:
        """Like the constructor, but an unknown option name is a ValueError listing them."""
        names = [f.name for f in fields(cls) if f.name != "strategy"]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(
                f"unknown selection option(s) {unknown}; valid options: {', '.join(names)}"
                " (plus the run-time tensors val_probs, val_labels and labeled_counts)"
            )
        return cls(strategy=strategy, **options)

    @property
    def needs_validation(self) -> bool:
        """Whether :func:`select` needs the teacher's validation probabilities and labels."""
        return self.calibrate or self.class_score == "precision"

    @property
    def needs_labeled_counts(self) -> bool:
        """Whether :func:`select` needs the labeled set's per-class counts."""
        return (
            self.target == "balance_labeled"
            or self.debias > 0
            or self.no_skew
            or self.strategy == "crest"
        )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown selection strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}"
            )
        used = _STRATEGY_OPTIONS[self.strategy]
        for name in sorted({n for opts in _STRATEGY_OPTIONS.values() for n in opts} - set(used)):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"option {name!r} is not used by strategy {self.strategy!r}"
                    f" (it reads: {', '.join(used)})"
                )
        defaults = {
            "threshold": DEFAULT_THRESHOLD,
            "floor": DEFAULT_FLOOR,
            "mapping": "linear",
            "class_score": "precision",
            "min_confidence": 0.0,
            "alpha": DEFAULT_ALPHA,
        }
        for name in used:
            if getattr(self, name) is None and name in defaults:
                object.__setattr__(self, name, defaults[name])
        for name in ("threshold", "min_confidence", "fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.strategy == "class_threshold":
            _check_choice("mapping", self.mapping, MAPPINGS)
            _check_choice("class_score", self.class_score, CLASS_SCORES)
            if not 0.0 <= self.floor <= self.threshold:
                raise ValueError(
                    f"floor must be in [0, threshold={self.threshold}], got {self.floor}"
                )
        if self.strategy == "topk":
            self._check_topk()
        if self.alpha is not None and not _number_in(self.alpha, 0, 4):
            raise ValueError(f"alpha must be a number in [0, 4], got {self.alpha!r}")
        for name in ("k", "budget", "max_per_class"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not self.soft and self.temperature != 1.0:
            raise ValueError("temperature only applies to soft labels; set soft=true")
        _check_choice("weighting", self.weighting, WEIGHTINGS)
        for name in ("soft", "calibrate", "no_skew"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not _number_in(self.debias, 0, 4):
            raise ValueError(f"debias must be a number in [0, 4] (0: off), got {self.debias!r}")

    def _check_topk(self) -> None:
        sizes = [n for n in ("k", "fraction", "budget") if getattr(self, n) is not None]
        if len(sizes) != 1:
            raise ValueError(f"topk needs exactly one of k, fraction, budget; got {sizes}")
        if self.target is not None:
            _check_choice("target", self.target, TARGETS)
        elif self.budget is not None:
            raise ValueError("budget is a total over classes: it needs a target")


def _number_in(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _check_choice(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


# ---------------------------------------------------------------------------- strategies


def threshold_mask(probs: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
    """Rows whose max probability is ``>= threshold`` (compared in ``probs``' dtype)."""
    return probs.max(dim=1).values >= threshold


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
    _check_choice("mapping", mapping, MAPPINGS)
    score = torch.as_tensor(class_score, dtype=torch.float64)
    top = score.max()
    beta = score / top if top > 0 else torch.zeros_like(score)
    mapped = beta if mapping == "linear" else beta / (2.0 - beta)
    return (mapped * tau).clamp(min=floor).float()


def class_threshold_mask(probs: Tensor, thresholds: Tensor) -> Tensor:
    """Rows whose max probability is ``>= thresholds[argmax]``."""
    conf, pred = probs.max(dim=1)
    return conf >= thresholds.to(device=probs.device, dtype=probs.dtype)[pred]


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
    """Class-balanced top-k: per predicted class, its most confident rows up to a quota.

    Give exactly one of ``k``, ``fraction``, ``budget``. Without ``target`` the quota of
    class ``c`` is ``k``, or ``round(fraction * rows predicted c)``. With ``target`` a
    total budget (``budget``, or ``k * C``, or ``round(fraction * N)``) is split by
    :func:`class_quotas`: ``"uniform"`` aims the pseudo set at equal class counts,
    ``"balance_labeled"`` at an even ``labeled + pseudo`` (needs ``labeled_counts``).
    Rows below ``min_confidence`` are never kept and do not count as available.
    """
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


def crest_mask(
    probs: Tensor, labeled_counts: Tensor, alpha: float = DEFAULT_ALPHA, min_confidence: float = 0.0
) -> Tensor:
    """Per predicted class, its most confident ``round(rate_c * rows predicted c)`` rows."""
    conf, pred = probs.max(dim=1)
    predicted = torch.bincount(pred, minlength=probs.shape[1]).double()
    rates = crest_rates(labeled_counts, alpha).to(probs.device)
    quotas = torch.floor(predicted * rates + 0.5).long()
    return keep_top_per_class(probs, conf >= min_confidence, quotas)


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
    max_per_class: int | None = None,
) -> Selection:
    """Turn a strategy's keep-mask into a :class:`Selection`.

    ``max_per_class`` keeps only the most confident kept rows of each predicted class.
    Targets are one-hot, or the teacher's probabilities sharpened with ``temperature``
    when ``soft``; weights are the confidence, or 1 with ``weighting="none"``.
    """
    _check_choice("weighting", weighting, WEIGHTINGS)
    num_classes = probs.shape[1]
    if max_per_class is not None:
        keep = keep_top_per_class(probs, keep, torch.full((num_classes,), max_per_class))
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
    strategy: str | SelectionConfig = "threshold",
    *,
    val_probs: Tensor | None = None,
    val_labels: Tensor | None = None,
    labeled_counts: Tensor | None = None,
    **options: object,
) -> Selection:
    """Select pseudo labels from teacher probabilities ``probs`` [N, C] (rows sum to 1).

    ``strategy`` is a strategy name with its options as keyword arguments (as a Hydra
    ``pseudo_label`` group passes them), or a ready :class:`SelectionConfig`.
    ``val_probs`` [V, C] with ``val_labels`` [V] (the teacher on the validation split)
    are needed by ``calibrate`` and by ``class_score="precision"``; ``labeled_counts``
    [C] by ``target="balance_labeled"`` and ``debias``. An empty selection is valid.
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
    if cfg.strategy == "threshold":
        keep = threshold_mask(probs, cfg.threshold)
    elif cfg.strategy == "class_threshold":
        if cfg.class_score == "precision":
            score = per_class_precision(corrected(val_probs), val_labels)
        else:
            score = per_class_mean_confidence(probs)
        thresholds = class_thresholds(cfg.threshold, score, cfg.floor, cfg.mapping)
        keep = class_threshold_mask(probs, thresholds)
    elif cfg.strategy == "crest":
        keep = crest_mask(probs, labeled_counts, cfg.alpha, cfg.min_confidence)
    else:
        keep = topk_mask(
            probs,
            k=cfg.k,
            fraction=cfg.fraction,
            budget=cfg.budget,
            target=cfg.target,
            labeled_counts=labeled_counts,
            min_confidence=cfg.min_confidence,
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


def _correct_and_known(pred: Tensor, true: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
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
    correct, known = _correct_and_known(probs.argmax(dim=1), labels, probs.shape[1])
    return (correct / known.clamp(min=1)).float()


def per_class_mean_confidence(probs: Tensor) -> Tensor:
    """Mean max probability over the rows predicted as each class (0 if none), float32 [C]."""
    num_classes = probs.shape[1]
    conf, pred = probs.max(dim=1)
    total = torch.zeros(num_classes, dtype=torch.float64, device=probs.device)
    total.index_add_(0, pred, conf.double())
    return (total / torch.bincount(pred, minlength=num_classes).clamp(min=1)).float()


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
        correct, known = _correct_and_known(sel.labels, true, num_classes)
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
