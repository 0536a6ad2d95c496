"""Pseudo-label selection on hand-made probabilities with hand-computed expected picks."""

from __future__ import annotations

import math

import pytest
import torch

from fer_lightning.pseudo.selection import (
    Selection,
    SelectionConfig,
    class_quotas,
    class_thresholds,
    debiased,
    finalize,
    fit_temperature,
    per_class_mean_confidence,
    per_class_precision,
    select,
    selection_stats,
    sharpen,
    threshold_mask,
)


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
    sel = select(probs, "threshold")  # default threshold 0.9
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
    options = {"threshold": 0.8, "floor": 0.1, "val_probs": val_probs, "val_labels": val_labels}
    assert ids(select(probs, "class_threshold", **options)) == [1, 2, 4, 5]
    convex = select(probs, "class_threshold", mapping="convex", **options)
    assert ids(convex) == [1, 2, 3, 4, 5]  # tau_c = 0.8, 0.267, 0.114, 0.1
    # class_score=confidence: the pool's mean confidence per predicted class instead
    by_conf = select(probs, "class_threshold", threshold=0.8, floor=0.1, class_score="confidence")
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
        ({"k": 0}, []),
        ({"fraction": 0.5}, [0, 2, 5, 6]),  # quotas round(4/2, 2/2, 1/2) = 2, 1, 1
        ({"k": 3, "min_confidence": 0.75}, [0, 2, 6]),
    ],
)
def test_topk_per_class(options: dict[str, object], expected: list[int]) -> None:
    assert ids(select(POOL, "topk", **options)) == expected


def test_class_quotas_water_filling() -> None:
    labeled, available = torch.tensor([10, 2, 5, 0]), torch.tensor([5, 3, 10, 10])
    # Raise class 3 to 2, classes 1 and 3 to 5 (class 1 is then exhausted), 2 and 3 to 7.
    assert class_quotas(available, 12, labeled).tolist() == [0, 3, 2, 7]
    assert class_quotas(available, 13, labeled).tolist() == [0, 3, 3, 7]  # tie: lower class
    assert class_quotas(available, 100, labeled).tolist() == [5, 3, 10, 10]
    assert class_quotas(torch.tensor([1, 5, 5, 0]), 9).tolist() == [1, 4, 4, 0]
    assert class_quotas(torch.tensor([1, 5, 5, 0]), 10).tolist() == [1, 5, 4, 0]
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
    assert ids(select(POOL, "topk", labeled_counts=labeled, **options)) == expected


# ------------------------------------------------------------------ shared finalize options


def test_max_per_class_keeps_the_most_confident() -> None:
    assert ids(select(POOL, "threshold", threshold=0.6)) == [0, 1, 2, 3, 4, 6]
    assert ids(select(POOL, "threshold", threshold=0.6, max_per_class=2)) == [0, 2, 3, 6]
    assert ids(select(POOL, "threshold", threshold=0.6, max_per_class=0)) == []


def test_soft_labels_and_temperature() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    identity = select(probs, "threshold", threshold=0.0, soft=True)
    assert torch.allclose(identity.targets, probs, atol=1e-6)
    sharp = select(probs, "threshold", threshold=0.0, soft=True, temperature=0.5)
    assert sharp.targets.dtype == torch.float32
    assert torch.allclose(sharp.targets.sum(1), torch.ones(2))
    assert sharp.targets[0].tolist() == pytest.approx([0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46])
    assert (sharp.targets.max(1).values > probs.max(1).values).all()
    assert sharp.labels.tolist() == [0, 2]
    assert torch.allclose(sharpen(probs, 1.0), probs)


def test_weights_confidence_or_none() -> None:
    by_conf = select(POOL, "threshold", threshold=0.8)
    assert by_conf.weights.dtype == torch.float32
    assert by_conf.weights.tolist() == pytest.approx([0.9, 0.95, 0.8])
    assert torch.equal(by_conf.weights, by_conf.confidence)
    flat = select(POOL, "threshold", threshold=0.8, weighting="none")
    assert flat.weights.tolist() == [1.0, 1.0, 1.0]


def assert_empty(sel: Selection, num_classes: int) -> None:
    assert len(sel) == 0
    assert (sel.index.shape, sel.index.dtype) == ((0,), torch.int64)
    assert (sel.labels.shape, sel.labels.dtype) == ((0,), torch.int64)
    assert (sel.targets.shape, sel.targets.dtype) == ((0, num_classes), torch.float32)
    assert (sel.weights.shape, sel.weights.dtype) == ((0,), torch.float32)
    assert (sel.confidence.shape, sel.confidence.dtype) == ((0,), torch.float32)


def test_empty_selections_are_valid() -> None:
    assert_empty(select(POOL, "threshold", threshold=0.99), 3)
    assert_empty(select(POOL, "threshold", threshold=0.99, soft=True, temperature=0.5), 3)
    empty_pool = torch.empty(0, 7)
    assert_empty(select(empty_pool, "topk", k=5), 7)
    assert_empty(select(empty_pool, "topk", budget=5, target="uniform"), 7)
    assert_empty(finalize(POOL, torch.zeros(7, dtype=torch.bool)), 3)


# ------------------------------------------------------------------------------- audit


def test_selection_stats_with_unknown_labels() -> None:
    sel = select(POOL, "threshold", threshold=0.6)  # rows 0 1 2 3 4 6 -> labels 0 0 0 1 0 1
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
    stats = selection_stats(select(POOL, "threshold", threshold=0.99), 3, POOL_TRUTH)
    assert stats["selected"] == 0
    assert stats["count"] == [0, 0, 0]
    assert all(math.isnan(v) for v in stats["mean_confidence"] + stats["precision"])
    assert math.isnan(stats["precision_overall"])


# ------------------------------------------------------------------------- config, errors


def test_config_defaults_and_config_object() -> None:
    cfg = SelectionConfig(strategy="class_threshold")
    assert (cfg.threshold, cfg.floor, cfg.mapping, cfg.class_score) == (
        0.9,
        0.5,
        "linear",
        "precision",
    )
    assert cfg.needs_validation and not cfg.needs_labeled_counts
    assert SelectionConfig.from_options("topk", k=2, target="balance_labeled").needs_labeled_counts
    assert SelectionConfig(debias=1.0).needs_labeled_counts
    assert SelectionConfig(calibrate=True).needs_validation
    via_config = select(POOL, SelectionConfig(strategy="topk", k=2))
    assert ids(via_config) == ids(select(POOL, "topk", k=2))


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
    plain = select(probs, "threshold", threshold=0.9)
    calibrated = select(
        probs, "threshold", threshold=0.9, calibrate=True, val_probs=probs, val_labels=labels
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
    assert set(select(probs, "threshold", threshold=0.8).labels.tolist()) == {0}
    sel = select(probs, "threshold", threshold=0.8, debias=1.0, labeled_counts=counts)
    assert sel.labels.tolist() == [0] * 6 + [1] * 3 + [2] * 3


@pytest.mark.parametrize(
    ("strategy", "options", "match"),
    [
        ("fixmatch", {}, "valid: threshold, class_threshold, topk"),
        ("threshold", {"tresh": 0.9}, "unknown selection option.*valid options: threshold"),
        ("threshold", {"k": 5}, "'k' is not used by strategy 'threshold'"),
        ("threshold", {"threshold": 1.5}, r"threshold must be in \[0, 1\]"),
        ("threshold", {"temperature": 0.5}, "only applies to soft labels"),
        ("threshold", {"soft": True, "temperature": 0.0}, "temperature must be > 0"),
        ("threshold", {"weighting": "entropy"}, "weighting must be one of"),
        ("threshold", {"max_per_class": -1}, "non-negative int"),
        ("class_threshold", {"mapping": "cubic"}, "mapping must be one of"),
        ("class_threshold", {"threshold": 0.6, "floor": 0.7}, "floor must be in"),
        ("class_threshold", {"class_score": "precison"}, "class_score must be one of"),
        ("threshold", {"class_score": "precision"}, "'class_score' is not used by strategy"),
        ("threshold", {"debias": -1}, r"debias must be a number in \[0, 4\]"),
        ("threshold", {"calibrate": "yes"}, "calibrate must be true or false"),
        ("topk", {}, "exactly one of k, fraction, budget"),
        ("topk", {"k": 2, "fraction": 0.5}, "exactly one of k, fraction, budget"),
        ("topk", {"budget": 10}, "needs a target"),
        ("topk", {"k": 2, "target": "even"}, "target must be one of"),
        ("topk", {"k": 2.5}, "non-negative int"),
    ],
)
def test_invalid_options(strategy: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select(POOL, strategy, **options)


def test_invalid_run_time_inputs() -> None:
    with pytest.raises(ValueError, match="needs val_probs"):
        select(POOL, "class_threshold")
    with pytest.raises(ValueError, match=r"val_probs must have shape \(-1, 3\)"):
        select(POOL, "class_threshold", val_probs=torch.ones(4, 7), val_labels=torch.ones(4))
    with pytest.raises(ValueError, match="labeled_counts is not used"):
        select(POOL, "topk", k=2, labeled_counts=torch.ones(3))
    with pytest.raises(ValueError, match="needs labeled_counts"):
        select(POOL, "topk", k=2, target="balance_labeled")
    with pytest.raises(ValueError, match="needs labeled_counts"):
        select(POOL, "threshold", debias=1.0)
    with pytest.raises(ValueError, match="summing to 1"):
        select(torch.randn(4, 3) * 5, "threshold")
    with pytest.raises(ValueError, match="not both"):
        select(POOL, SelectionConfig(), threshold=0.5)
