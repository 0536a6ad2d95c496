"""Pseudo-label selection on hand-made probabilities with hand-computed expected picks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hydra import compose, initialize_config_dir

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.config import PseudoLabelConfig
from fer_lightning.pseudo.selection import (
    Selection,
    SelectionConfig,
    balance_audit,
    debiased,
    finalize,
    fit_temperature,
    no_skew_caps,
    select,
    selection_stats,
    sharpen,
)
from fer_lightning.pseudo.strategies import (
    ClassThreshold,
    Crest,
    Inputs,
    Strategy,
    Threshold,
    TopK,
    build_strategy,
    class_quotas,
    class_thresholds,
    crest_rates,
    per_class_mean_confidence,
    per_class_precision,
    threshold_mask,
)
from fer_lightning.results import _balance_reading


def make_probs(rows: list[tuple[int, float]], num_classes: int) -> torch.Tensor:
    """One row per (predicted class, confidence); the rest of the mass spread evenly."""
    probs = torch.empty(len(rows), num_classes)
    for i, (cls, conf) in enumerate(rows):
        probs[i] = (1.0 - conf) / (num_classes - 1)
        probs[i, cls] = conf
    return probs


# A 3-class pool. Rows 1 and 4 tie (class 0, 0.7): the lower index wins.
POOL = make_probs(
    [(0, 0.9), (0, 0.7), (0, 0.95), (1, 0.6), (0, 0.7), (2, 0.5), (1, 0.8)], num_classes=3
)
POOL_TRUTH = torch.tensor([0, 1, 0, -1, 0, 2, 1])


def ids(sel: Selection) -> list[int]:
    return sel.index.tolist()


# ------------------------------------------------------------------------------ threshold


def test_threshold_keeps_rows_at_the_boundary() -> None:
    probs = make_probs([(0, 0.9), (1, 0.89999), (2, 0.95), (3, 0.5)], num_classes=4)
    assert threshold_mask(probs, 0.9).tolist() == [True, False, True, False]
    sel = select(probs, Threshold())  # default threshold 0.9
    assert ids(sel) == [0, 2]
    assert sel.labels.tolist() == [0, 2]
    assert sel.targets.tolist() == [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    assert sel.confidence.tolist() == pytest.approx([0.9, 0.95])


# ------------------------------------------------------------------------ class_threshold


def test_class_thresholds_linear_convex_and_floor() -> None:
    score = torch.tensor([0.8, 0.4, 0.2, 0.0])  # beta = 1, 0.5, 0.25, 0
    linear = class_thresholds(0.8, score, floor=0.1, mapping="linear")
    assert linear.dtype == torch.float32
    assert linear.tolist() == pytest.approx([0.8, 0.4, 0.2, 0.1])
    convex = class_thresholds(0.8, score, floor=0.1, mapping="convex")  # M(b) = b / (2 - b)
    assert convex.tolist() == pytest.approx([0.8, 0.8 / 3, 0.8 / 7, 0.1])
    assert class_thresholds(0.8, score, floor=0.3).tolist() == pytest.approx([0.8, 0.4, 0.3, 0.3])
    assert class_thresholds(0.9, torch.zeros(3), floor=0.5).tolist() == [0.5, 0.5, 0.5]


def _validation(precision_rows: list[tuple[int, int]], num_classes: int):
    """Validation probs/labels whose per-class precision is ``right / predicted`` per class."""
    rows, labels = [], []
    for cls, (predicted, right) in enumerate(precision_rows):
        for i in range(predicted):
            rows.append((cls, 0.9))
            labels.append(cls if i < right else (cls + 1) % num_classes)
    return make_probs(rows, num_classes), torch.tensor(labels)


def test_class_threshold_selection_uses_the_predicted_class_threshold() -> None:
    probs = make_probs(
        [(0, 0.79), (0, 0.8), (1, 0.45), (1, 0.39), (2, 0.35), (3, 0.3)], num_classes=4
    )
    # validation precision 0.8, 0.4, 0.2, 0.0 -> tau_c = 0.8, 0.4, 0.2, 0.1
    val_probs, val_labels = _validation([(5, 4), (5, 2), (5, 1), (1, 0)], num_classes=4)
    val = {"val_probs": val_probs, "val_labels": val_labels}
    assert ids(select(probs, ClassThreshold(threshold=0.8, floor=0.1), **val)) == [1, 2, 4, 5]
    convex = select(probs, ClassThreshold(threshold=0.8, floor=0.1, mapping="convex"), **val)
    assert ids(convex) == [1, 2, 3, 4, 5]  # tau_c = 0.8, 0.267, 0.114, 0.1
    # class_score=confidence: the pool's mean confidence per predicted class instead
    by_conf = select(probs, ClassThreshold(threshold=0.8, floor=0.1, class_score="confidence"))
    # scores 0.795, 0.42, 0.35, 0.3 -> tau_c = 0.8, 0.423, 0.352, 0.302
    assert ids(by_conf) == [1, 2]


def test_per_class_scores_from_validation_predictions() -> None:
    probs = make_probs(
        [(0, 0.9), (0, 0.5), (1, 0.6), (1, 0.8), (1, 0.7), (2, 0.4), (2, 0.9)], num_classes=4
    )
    labels = torch.tensor([0, 1, 1, 1, 0, 2, -1])  # the last row's label is unknown
    precision = per_class_precision(probs, labels)
    assert precision.dtype == torch.float32
    assert precision.tolist() == pytest.approx([0.5, 2 / 3, 1.0, 0.0])  # 3: never predicted
    confidence = per_class_mean_confidence(probs)
    assert confidence.tolist() == pytest.approx([0.7, 0.7, 0.65, 0.0])


# ----------------------------------------------------------------------------------- topk


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"k": 2}, [0, 2, 3, 5, 6]),
        ({"k": 3}, [0, 1, 2, 3, 5, 6]),  # tie at 0.7: row 1 before row 4
        ({"fraction": 0.5}, [0, 2, 5, 6]),  # quotas round(4/2, 2/2, 1/2) = 2, 1, 1
        ({"k": 3, "min_confidence": 0.75}, [0, 2, 6]),
    ],
)
def test_topk_per_class(options: dict[str, object], expected: list[int]) -> None:
    assert ids(select(POOL, TopK(**options))) == expected


def test_class_quotas_water_filling_leaves_a_short_class_budget_unspent() -> None:
    labeled, available = torch.tensor([10, 2, 5, 0]), torch.tensor([5, 3, 10, 10])
    # Level 6 (0, 4, 1, 6) plus one to class 1; class 1 has only 3 candidates and its
    # shortfall stays unspent instead of raising classes 2 and 3 further.
    assert class_quotas(available, 12, labeled).tolist() == [0, 3, 1, 6]
    assert class_quotas(available, 13, labeled).tolist() == [0, 3, 2, 6]  # tie: lower class
    assert class_quotas(available, 100, labeled).tolist() == [5, 3, 10, 10]
    assert class_quotas(torch.tensor([1, 5, 5, 0]), 9).tolist() == [1, 2, 2, 0]
    assert class_quotas(torch.tensor([1, 5, 5, 0]), 10).tolist() == [1, 3, 2, 0]
    assert class_quotas(torch.tensor([1, 5, 5, 0]), 0).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"budget": 5, "target": "uniform"}, [0, 2, 3, 5, 6]),  # quotas 2, 2, 1
        ({"k": 1, "target": "uniform"}, [2, 5, 6]),  # budget 3: quotas 1, 1, 1
        ({"fraction": 0.5, "target": "uniform"}, [0, 2, 5, 6]),  # budget 4: quotas 2, 1, 1
        # labeled 0, 5, 1 + available 4, 2, 1, budget 4: quotas 3, 0, 1
        ({"budget": 4, "target": "balance_labeled"}, [0, 1, 2, 5]),
    ],
)
def test_topk_target_distribution(options: dict[str, object], expected: list[int]) -> None:
    labeled = torch.tensor([0, 5, 1]) if options["target"] == "balance_labeled" else None
    assert ids(select(POOL, TopK(**options), labeled_counts=labeled)) == expected


# ------------------------------------------------------------------ shared finalize options


def test_max_per_class_keeps_the_most_confident() -> None:
    assert ids(select(POOL, Threshold(threshold=0.6))) == [0, 1, 2, 3, 4, 6]
    assert ids(select(POOL, Threshold(threshold=0.6), max_per_class=2)) == [0, 2, 3, 6]
    assert ids(select(POOL, Threshold(threshold=0.6), max_per_class=0)) == []


def test_soft_labels_and_temperature() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    identity = select(probs, Threshold(threshold=0.0), soft=True)
    assert torch.allclose(identity.targets, probs, atol=1e-6)
    sharp = select(probs, Threshold(threshold=0.0), soft=True, temperature=0.5)
    assert sharp.targets.dtype == torch.float32
    assert torch.allclose(sharp.targets.sum(1), torch.ones(2))
    assert sharp.targets[0].tolist() == pytest.approx([0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46])
    assert (sharp.targets.max(1).values > probs.max(1).values).all()
    assert sharp.labels.tolist() == [0, 2]
    assert torch.allclose(sharpen(probs, 1.0), probs)


def test_weights_confidence_or_none() -> None:
    by_conf = select(POOL, Threshold(threshold=0.8))
    assert by_conf.weights.dtype == torch.float32
    assert by_conf.weights.tolist() == pytest.approx([0.9, 0.95, 0.8])
    assert torch.equal(by_conf.weights, by_conf.confidence)
    flat = select(POOL, Threshold(threshold=0.8), weighting="none")
    assert flat.weights.tolist() == [1.0, 1.0, 1.0]


def assert_empty(sel: Selection, num_classes: int) -> None:
    assert len(sel) == 0
    assert (sel.index.shape, sel.index.dtype) == ((0,), torch.int64)
    assert (sel.labels.shape, sel.labels.dtype) == ((0,), torch.int64)
    assert (sel.targets.shape, sel.targets.dtype) == ((0, num_classes), torch.float32)
    assert (sel.weights.shape, sel.weights.dtype) == ((0,), torch.float32)
    assert (sel.confidence.shape, sel.confidence.dtype) == ((0,), torch.float32)


def test_empty_selections_are_valid() -> None:
    assert_empty(select(POOL, Threshold(threshold=0.99)), 3)
    assert_empty(select(POOL, Threshold(threshold=0.99), soft=True, temperature=0.5), 3)
    empty_pool = torch.empty(0, 7)
    assert_empty(select(empty_pool, TopK(k=5)), 7)
    assert_empty(select(empty_pool, TopK(budget=5, target="uniform")), 7)
    assert_empty(finalize(POOL, torch.zeros(7, dtype=torch.bool)), 3)


# ------------------------------------------------------------------------------- audit


def test_selection_stats_with_unknown_labels() -> None:
    sel = select(POOL, Threshold(threshold=0.6))  # rows 0 1 2 3 4 6 -> labels 0 0 0 1 0 1
    stats = selection_stats(sel, 3, POOL_TRUTH)
    assert stats["selected"] == 6
    assert stats["count"] == [4, 2, 0]
    mean = stats["mean_confidence"]
    assert mean[:2] == pytest.approx([(0.9 + 0.7 + 0.95 + 0.7) / 4, 0.7])
    assert math.isnan(mean[2])
    assert stats["known"] == [4, 1, 0]  # row 3's truth is unknown
    precision = stats["precision"]
    assert precision[:2] == [0.75, 1.0]
    assert math.isnan(precision[2])
    assert stats["precision_overall"] == 0.8
    assert "precision" not in selection_stats(sel, 3)
    unknown = selection_stats(sel, 3, torch.full((7,), -1))
    assert math.isnan(unknown["precision_overall"])


def test_selection_stats_of_an_empty_selection() -> None:
    stats = selection_stats(select(POOL, Threshold(threshold=0.99)), 3, POOL_TRUTH)
    assert stats["selected"] == 0
    assert stats["count"] == [0, 0, 0]
    assert all(math.isnan(v) for v in stats["mean_confidence"] + stats["precision"])
    assert math.isnan(stats["precision_overall"])


# ------------------------------------------------------------------------- config, errors


def test_config_defaults_and_config_object() -> None:
    strategy = ClassThreshold()
    assert (strategy.threshold, strategy.floor, strategy.mapping, strategy.class_score) == (
        0.9,
        0.5,
        "linear",
        "precision",
    )
    cfg = SelectionConfig(strategy)
    assert cfg.needs_validation and not cfg.needs_labeled_counts
    assert not SelectionConfig(ClassThreshold(class_score="confidence")).needs_validation
    assert SelectionConfig(TopK(k=2, target="balance_labeled")).needs_labeled_counts
    assert SelectionConfig(Crest()).needs_labeled_counts
    assert SelectionConfig(debias=1.0).needs_labeled_counts
    assert SelectionConfig(calibrate=True).needs_validation
    via_config = select(POOL, SelectionConfig(TopK(k=2)))
    assert ids(via_config) == ids(select(POOL, TopK(k=2)))


# ------------------------------------------------------------- calibration and debiasing


def test_temperature_scaling_recovers_the_temperature_of_overconfident_predictions() -> None:
    """Labels drawn from softmax(z); the teacher reports softmax(2 z): T = 2 undoes it."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    overconfident = (2 * logits).softmax(1)
    assert fit_temperature(overconfident, labels) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(logits.softmax(1), labels) == pytest.approx(1.0, rel=0.1)
    assert fit_temperature(overconfident, torch.full((4000,), -1)) == 1.0  # nothing known


def test_calibration_changes_confidences_never_the_predicted_class() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(500, 3, generator=g) * 2
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    probs = (3 * logits).softmax(1)  # overconfident: a 0.9 threshold keeps too many
    plain = select(probs, Threshold(threshold=0.9))
    calibrated = select(
        probs, Threshold(threshold=0.9), calibrate=True, val_probs=probs, val_labels=labels
    )
    assert calibrated.calibration == pytest.approx(3.0, rel=0.15)
    assert set(ids(calibrated)) < set(ids(plain))
    assert torch.equal(calibrated.labels, probs[calibrated.index].argmax(1))


def test_debias_divides_out_the_labeled_prior() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.9, 0.05, 0.05]])
    counts = torch.tensor([60, 30, 10])  # prior 0.6, 0.3, 0.1
    flat = debiased(probs, counts, 1.0)
    torch.testing.assert_close(flat[0], torch.full((3,), 1 / 3))  # p / prior is constant
    assert torch.equal(debiased(probs, counts, 0.0), probs)
    torch.testing.assert_close(flat.sum(1), torch.ones(2))


def test_debias_lets_minority_classes_into_a_threshold_selection() -> None:
    """A majority-biased teacher: a plain threshold keeps class 0 only; debiased, all three."""
    rows = [[0.99, 0.005, 0.005]] * 6 + [[0.2, 0.78, 0.02]] * 3 + [[0.25, 0.05, 0.7]] * 3
    probs = torch.tensor(rows)
    counts = torch.tensor([80, 15, 5])
    assert set(select(probs, Threshold(threshold=0.8)).labels.tolist()) == {0}
    sel = select(probs, Threshold(threshold=0.8), debias=1.0, labeled_counts=counts)
    assert sel.labels.tolist() == [0] * 6 + [1] * 3 + [2] * 3


@pytest.mark.parametrize(
    ("strategy", "options", "match"),
    [
        (Threshold, {"threshold": 1.5}, r"threshold must be a number in \[0, 1\]"),
        (ClassThreshold, {"mapping": "cubic"}, "mapping must be one of"),
        (ClassThreshold, {"threshold": 0.6, "floor": 0.7}, "floor must be in"),
        (ClassThreshold, {"class_score": "precison"}, "class_score must be one of"),
        (TopK, {}, "exactly one of k, fraction, budget"),
        (TopK, {"k": 2, "fraction": 0.5}, "exactly one of k, fraction, budget"),
        (TopK, {"budget": 10}, "needs a target"),
        (TopK, {"k": 2, "target": "even"}, "target must be one of"),
        (TopK, {"k": 2.5}, "non-negative int"),
        (TopK, {"k": 0}, "k=0 selects no pseudo labels"),
        (TopK, {"fraction": 0.0}, "fraction=0 selects no pseudo labels"),
        (Crest, {"alpha": -1}, r"alpha must be a number in \[0, 4\]"),
    ],
)
def test_invalid_strategy_options(strategy: type, options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        strategy(**options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"tresh": 0.9}, "unknown selection option.*valid options: soft"),
        ({"temperature": 0.5}, "only applies to soft labels"),
        ({"soft": True, "temperature": 0.0}, "temperature must be > 0"),
        ({"weighting": "entropy"}, "weighting must be one of"),
        ({"max_per_class": -1}, "non-negative int"),
        ({"debias": -1}, r"debias must be a number in \[0, 4\]"),
        ({"calibrate": "yes"}, "calibrate must be true or false"),
    ],
)
def test_invalid_shared_options(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select(POOL, Threshold(), **options)


@pytest.mark.parametrize(
    ("node", "match"),
    [
        ({"_target_": "fer_lightning.pseudo.strategies.FixMatch"}, "cannot import it"),
        ({"_target_": "collections.OrderedDict"}, "is not a .*Strategy subclass"),
        ({"threshold": 0.9}, "must name its class with _target_"),
        (
            {"_target_": "fer_lightning.pseudo.strategies.Threshold", "k": 5},
            "Threshold does not take k \\(its options: threshold\\)",
        ),
    ],
)
def test_strategy_config_errors_name_the_key_and_the_options(node: dict, match: str) -> None:
    with pytest.raises(ValueError, match=f"pseudo_label.strategy.*{match}"):
        build_strategy(node)


def test_a_strategy_of_ones_own_needs_no_change_to_the_package() -> None:
    @dataclass(frozen=True)
    class Lowest(Strategy):
        """Keeps the n least confident rows: unlike every built-in, to show it is used."""

        n: int = 1

        def keep(self, probs: torch.Tensor, inputs: Inputs) -> torch.Tensor:
            order = probs.max(dim=1).values.argsort(stable=True)
            mask = torch.zeros(len(probs), dtype=torch.bool)
            mask[order[: self.n]] = True
            return mask

    assert ids(select(POOL, Lowest(n=2))) == [3, 5]

    class Broken(Strategy):
        def keep(self, probs: torch.Tensor, inputs: Inputs) -> torch.Tensor:
            return probs.argmax(dim=1)

    with pytest.raises(ValueError, match="Broken.keep must return a bool tensor"):
        select(POOL, Broken())


def test_invalid_run_time_inputs() -> None:
    with pytest.raises(ValueError, match="needs val_probs"):
        select(POOL, ClassThreshold())
    with pytest.raises(ValueError, match=r"val_probs must have shape \(-1, 3\)"):
        select(POOL, ClassThreshold(), val_probs=torch.ones(4, 7), val_labels=torch.ones(4))
    with pytest.raises(ValueError, match="labeled_counts is not used"):
        select(POOL, TopK(k=2), labeled_counts=torch.ones(3))
    with pytest.raises(ValueError, match="needs labeled_counts"):
        select(POOL, TopK(k=2, target="balance_labeled"))
    with pytest.raises(ValueError, match="needs labeled_counts"):
        select(POOL, Threshold(), debias=1.0)
    with pytest.raises(ValueError, match="summing to 1"):
        select(torch.randn(4, 3) * 5, Threshold())
    with pytest.raises(ValueError, match="not both"):
        select(POOL, SelectionConfig(), threshold=0.5)


# ------------------------------------------------------- never worse imbalance (issue 19)


def test_crest_rates_rank_classes_by_labeled_count_not_index() -> None:
    labeled = torch.tensor([10, 40, 20, 5])  # by count: class 1, 2, 0, 3
    # rank l takes N_{C+1-l} / N_1: class 1 -> 5/40, class 2 -> 10/40, class 0 -> 20/40, 3 -> 1
    assert crest_rates(labeled, alpha=1.0).tolist() == pytest.approx([0.5, 0.125, 0.25, 1.0])
    assert crest_rates(labeled, alpha=0.5).tolist() == pytest.approx(
        [0.5**0.5, 0.125**0.5, 0.25**0.5, 1.0]
    )
    assert crest_rates(labeled, alpha=0.0).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_crest_keeps_each_predicted_class_at_its_rate() -> None:
    # class 0 predicted 8 times, class 1 twice; labeled: class 0 is 4x class 1 (rate 1/4)
    rows = [(0, 0.9 - 0.05 * i) for i in range(8)] + [(1, 0.4), (1, 0.35)]
    probs = make_probs(rows, num_classes=3)
    sel = select(probs, Crest(alpha=1.0), labeled_counts=torch.tensor([40, 10, 20]))
    # class 0 keeps round(8 * 10/40) = 2 (its most confident), class 1 keeps both, however
    # unconfident: ranked within the class, never cut by one absolute confidence
    assert ids(sel) == [0, 1, 8, 9]


def test_no_skew_caps_are_the_largest_that_keep_the_largest_share() -> None:
    kept, labeled = torch.tensor([20, 1, 0]), torch.tensor([10, 2, 2])
    caps = no_skew_caps(kept, labeled)
    assert caps.tolist() == [2, 1, 0]  # (10 + 2) / 17 <= 10 / 14 < (10 + 3) / 18
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        labeled = torch.randint(0, 50, (5,), generator=g)
        labeled[0] += 1
        kept = torch.randint(0, 300, (5,), generator=g)
        caps = no_skew_caps(kept, labeled)
        share = labeled.max() / labeled.sum()
        assert bool((caps <= kept).all())
        assert ((labeled + caps).max() / (labeled + caps).sum()) <= share + 1e-9
        for c in range(5):  # maximal: one more of any trimmed class breaks the bound
            if caps[c] < kept[c]:
                more = caps.clone()
                more[c] += 1
                assert (labeled + more).max() / (labeled + more).sum() > share


def test_no_skew_trims_a_threshold_flooded_by_the_majority() -> None:
    rows = [(0, 0.99 - 0.001 * i) for i in range(20)] + [(1, 0.95), (2, 0.5)]
    probs = make_probs(rows, num_classes=3)
    labeled = torch.tensor([10, 2, 2])
    assert len(select(probs, Threshold(threshold=0.9))) == 21
    sel = select(probs, Threshold(threshold=0.9), no_skew=True, labeled_counts=labeled)
    assert ids(sel) == [0, 1, 20]  # the two most confident of class 0, and class 1's one


# Labeled counts of FER2013 at 10 % labels (surprise, fear, disgust, happiness, sadness,
# anger, neutral) and a weak teacher on a pool shaped like FER2013's: confident on
# happiness, surprise and neutral, never above 0.5 on fear, disgust, sadness and anger.
FER_LABELED = torch.tensor([285, 369, 39, 649, 435, 360, 447])
WEAK_TEACHER = [(3, 0.6, 0.98, 5800), (0, 0.5, 0.9, 2500), (6, 0.4, 0.8, 4000)] + [
    (c, 0.2, 0.48, n) for c, n in ((1, 3300), (2, 300), (4, 3900), (5, 3200))
]


def weak_teacher_probs() -> torch.Tensor:
    """Each row's top class at its confidence, the rest of its mass leaning to the classes
    the teacher saw most (as a teacher trained on imbalanced labels does)."""
    g = torch.Generator().manual_seed(0)
    prior = FER_LABELED.double() / FER_LABELED.sum()
    blocks = []
    for cls, low, high, n in WEAK_TEACHER:
        conf = low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)
        rest = prior.clone()
        rest[cls] = 0
        block = (1 - conf)[:, None] * (rest / rest.sum())[None, :]
        block[:, cls] = conf
        blocks.append(block)
    probs = torch.cat(blocks).float()
    assert bool((probs.max(1).values[probs.argmax(1) == 1] < 0.5).all())  # fear never >= 0.5
    return probs


def default_selection() -> SelectionConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train")
    return PseudoLabelConfig.from_cfg(cfg.pseudo_label).selection


def test_the_default_adds_every_emotion_a_weak_teacher_predicts_without_skewing() -> None:
    probs, config = weak_teacher_probs(), default_selection()
    runtime = {"labeled_counts": FER_LABELED}
    if config.needs_validation:  # validation: the teacher on labeled faces it predicts alike
        runtime |= {"val_probs": probs[::10], "val_labels": probs[::10].argmax(1)}
    sel = select(probs, config, **runtime)
    counts = torch.bincount(sel.labels, minlength=7)
    assert bool((counts > 0).all()), f"an emotion got no pseudo label: {counts.tolist()}"
    audit = balance_audit(counts, FER_LABELED)
    assert audit["largest_share_after"] <= audit["largest_share_labeled"]
    assert not audit["skewed"] and audit["no_pseudo"] == []
    happy = FER_LABELED[3] / FER_LABELED.sum()
    assert (FER_LABELED[3] + counts[3]) / (FER_LABELED + counts).sum() <= happy


def test_a_budget_the_scarce_classes_cannot_take_stays_unspent() -> None:
    # the old default's failure: min_confidence 0.5 leaves the hard emotions no candidate
    probs = weak_teacher_probs()
    strategy = TopK(fraction=0.3, target="balance_labeled", min_confidence=0.5)
    sel = select(probs, strategy, debias=0.0, labeled_counts=FER_LABELED)
    counts = torch.bincount(sel.labels, minlength=7)
    assert counts[[1, 2, 4, 5]].tolist() == [0, 0, 0, 0]
    # the level the budget reaches (about 1,370 per emotion) caps happiness: the budget
    # the hard emotions could not take is not handed to it
    budget = round(0.3 * len(probs))
    level = (budget + int(FER_LABELED.sum())) // 7 + 1
    assert int(counts.sum()) < budget
    assert int(counts[3]) <= level - int(FER_LABELED[3])


def test_the_reading_warns_when_a_pseudo_set_skews_or_leaves_an_emotion_out() -> None:
    row = {"share_labeled": 0.25, "share_after": 0.40, "no_pseudo": "fear disgust",
           "pseudo_added": 100}  # fmt: skip
    lines = _balance_reading(row)
    assert lines[0].startswith("WARNING: labeled + pseudo is more skewed") and "40.0 %" in lines[0]
    assert lines[1] == "WARNING: no pseudo label for fear, disgust."
    fine = _balance_reading({**row, "share_after": 0.2, "no_pseudo": ""})
    assert fine == ["Balance: the largest emotion is 20.0 % of labeled + pseudo (25.0 % of the "
                    "labeled set)."]  # fmt: skip


def test_the_audit_names_only_scarce_emotions_left_without_pseudo_labels() -> None:
    audit = balance_audit(torch.tensor([0, 5, 0, 0]), torch.tensor([50, 10, 5, 20]))
    assert audit["no_pseudo"] == [2, 3]  # class 0, the most frequent, is balanced out by design
    assert audit["largest_share_after"] == pytest.approx(50 / 90) and not audit["skewed"]
