"""Runs that differ only by their seed, summarised as one group: mean +- std over seeds.

What a semi-supervised comparison reports (Oliver et al. 2018): each method against the
supervised baseline on the same labels, paired per seed (in a study, the baseline run of
the same seed: an online method's round 0 is already its own model, so "final - its
teacher" would mislead; outside a study, a student against its own teacher), the share of
the baseline -> fully supervised ceiling gap it closes, what each run cost, and the
spread over seeds. Only finished runs enter the means; the others are listed with their
status. Torch-free.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fer_lightning.emotions import EMOTIONS
from fer_lightning.results import pct

CEILING, BASELINE = "ceiling", "baseline"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Group:
    """The runs of one configuration (less the seed)."""

    key: str  # digest of the settings less the seed
    label: str  # the runs' label less their seed item
    role: str | None  # the study role (baseline, a strategy, ceiling) when in a study
    runs: list = field(default_factory=list)  # RunSummary, in seed order
    baseline: Group | None = None  # the study's supervised baseline, the reference when set

    @property
    def done(self) -> list:
        return [r for r in self.runs if r.status == "done"]

    @property
    def left_out(self) -> list:
        return [r for r in self.runs if r.status != "done"]

    def stat(self, which: str, key: str) -> tuple[float, float]:
        """Mean +- std of ``key`` of the teacher (``which="teacher"``) or the final round."""
        return mean_std([getattr(r, which)[key] for r in self.done])

    def paired(self, key: str = "test_macro_f1") -> list[float]:
        """Per seed (and fold): the final round's ``key`` less the study baseline's of the
        same seed and fold (without a baseline: less its own teacher's)."""
        if self.baseline is None:
            return [r.final[key] - r.teacher[key] for r in self.done]
        reference = {(r.seed, r.fold): r.final for r in self.baseline.done}
        return [
            r.final[key] - reference[r.seed, r.fold][key]
            for r in self.done
            if (r.seed, r.fold) in reference
        ]

    def start(self, key: str = "test_macro_f1") -> float:
        """What the group is measured from: the baseline's mean, else its teachers'."""
        if self.baseline is not None:
            return self.baseline.stat("final", key)[0]
        return self.stat("teacher", key)[0]

    def cost(self, key: str) -> tuple[float, float]:
        """Mean +- std over runs of a run's whole cost (``seconds`` or ``images``, all rounds)."""
        return mean_std([r.cost(key) for r in self.done])

    def gap_closed(self, ceiling: Group | None) -> float:
        """The share (0..1) of the baseline -> ceiling test macro-F1 gap this group closes."""
        if ceiling is None or not self.done or not ceiling.done:
            return math.nan
        baseline = self.start()
        top = ceiling.stat("final", "test_macro_f1")[0]
        final = self.stat("final", "test_macro_f1")[0]
        return (final - baseline) / (top - baseline) if top > baseline else math.nan

    def summary(self, ceiling: Group | None) -> dict[str, Any]:
        """One groups.csv row (fractions, not %)."""
        row: dict[str, Any] = {"group": self.label, "role": self.role, "key": self.key}
        row["n"] = len(self.done)
        row["left_out"] = " ".join(f"{r.label} ({r.status})" for r in self.left_out)
        row["seeds"] = " ".join(str(r.seed) for r in self.done)
        for which in ("teacher", "final"):
            for key in ("test_macro_f1", "test_acc", "val_macro_f1"):
                row[f"{which}_{key}_mean"], row[f"{which}_{key}_std"] = self.stat(which, key)
        deltas = self.paired()
        row["delta_mean"], row["delta_std"] = mean_std(deltas)
        row["improved"] = sum(d > 0 for d in deltas)
        for e in EMOTIONS:
            row[f"delta_f1_{e}_mean"], row[f"delta_f1_{e}_std"] = mean_std(
                self.paired(f"test_f1_{e}")
            )
        row["gap_closed"] = self.gap_closed(ceiling)
        row["seconds_mean"] = self.cost("seconds")[0]
        row["images_mean"] = self.cost("images")[0]
        row["pseudo_added_mean"] = mean_std([r.final["pseudo_added"] for r in self.done])[0]
        precision = [r.final["pseudo_precision"] for r in self.done]
        row["pseudo_precision_mean"] = mean_std(precision)[0]
        for e in EMOTIONS:
            row[f"pseudo_count_{e}_mean"] = mean_std(
                [r.final.get(f"pseudo_count_{e}", math.nan) for r in self.done]
            )[0]
            row[f"pseudo_precision_{e}_mean"] = mean_std(
                [r.final.get(f"pseudo_precision_{e}", math.nan) for r in self.done]
            )[0]
        return row


def group_runs(runs: Sequence) -> list[Group]:
    """Runs grouped by their settings less the seed, in first-seen order."""
    groups: dict[str, Group] = {}
    for run in runs:
        group = groups.setdefault(run.group, Group(run.group, _without_seed(run.label), run.role))
        group.runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda r: (r.seed is None, r.seed))
    baseline = next((g for g in groups.values() if g.role == BASELINE), None)
    for group in groups.values():
        if group is not baseline:
            group.baseline = baseline
    return list(groups.values())


def _without_seed(label: str) -> str:
    kept = [item for item in label.split(",") if not item.startswith("seed=")]
    return ",".join(kept) or "defaults"


def ceiling_of(groups: Sequence[Group]) -> Group | None:
    return next((g for g in groups if g.role == CEILING and g.done), None)


def best_by_validation(groups: Sequence[Group]) -> Group | None:
    """The group whose final rounds have the best mean VALIDATION macro-F1 (never test);
    the ceiling, which uses labels the others do not have, is not a candidate."""
    candidates = [
        g
        for g in groups
        if g.done and g.role != CEILING and not math.isnan(g.stat("final", "val_macro_f1")[0])
    ]
    return max(candidates, key=lambda g: g.stat("final", "val_macro_f1")[0], default=None)


def is_study(groups: Sequence[Group]) -> bool:
    """Several seeds per group, or study roles: then the groups table is printed."""
    return any(len(g.runs) > 1 for g in groups) or any(g.role for g in groups)


def _pm(stat: tuple[float, float]) -> str:
    mean, std = stat
    return "-" if math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def groups_table(groups: Sequence[Group]) -> str:
    """Markdown, one row per group: mean ± std (n) of teacher and final, paired difference."""
    ceiling = ceiling_of(groups)
    versus = "final - baseline" if any(g.baseline for g in groups) else "final - teacher"
    header = ["group", "n", "teacher F1", "final F1", "final acc", "val F1", versus, "improved",
              "gap closed", "pseudo added", "pseudo precision", "train s", "images"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for g in groups:
        row = g.summary(ceiling)
        gap = row["gap_closed"]
        n = f"{row['n']}" + (f" (+{len(g.left_out)} left out)" if g.left_out else "")
        cells = [
            g.label.replace("|", "\\|"),
            n,
            _pm(g.stat("teacher", "test_macro_f1")),
            _pm(g.stat("final", "test_macro_f1")),
            _pm(g.stat("final", "test_acc")),
            _pm(g.stat("final", "val_macro_f1")),
            "-" if g.role == BASELINE else _signed((row["delta_mean"], row["delta_std"])),
            "-" if g.role == BASELINE else f"{row['improved']}/{row['n']}",
            "-" if math.isnan(gap) else f"{100 * gap:.0f} %",
            "-" if math.isnan(row["pseudo_added_mean"]) else f"{row['pseudo_added_mean']:.0f}",
            pct(row["pseudo_precision_mean"]),
            _amount(row["seconds_mean"], "{:.0f}"),
            _amount(row["images_mean"], "{:,.0f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _amount(value: float, form: str) -> str:
    return "-" if math.isnan(value) else form.format(value)


def emotion_changes_table(groups: Sequence[Group]) -> str:
    """Per-emotion test F1 change against the baseline, mean ± std per group."""
    header = ["group", *EMOTIONS]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(EMOTIONS)]
    for g in groups:
        if not g.done or g.role in (CEILING, BASELINE):
            continue
        cells = [_signed(mean_std(g.paired(f"test_f1_{e}"))) for e in EMOTIONS]
        lines.append("| " + " | ".join([g.label.replace("|", "\\|"), *cells]) + " |")
    return "\n".join(lines)


def _signed(stat: tuple[float, float]) -> str:
    mean, std = stat
    return "-" if math.isnan(mean) else f"{100 * mean:+.1f} ± {100 * std:.1f}"
