"""Figures shared by TensorBoard logging and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_matrix_figure(cm: np.ndarray, labels: Sequence[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix (rows: true, columns: predicted) with counts."""
    cm = np.asarray(cm, dtype=np.int64)
    norm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def threshold_figure(
    thresholds: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str = "",
    ylabel: str = "",
) -> Figure:
    """A metric against the pseudo-label threshold, one line per series.

    Runs sharing a threshold (e.g. seeds) are each drawn as a dot; the line joins their
    means, with error bars of one standard deviation where there are several.
    """
    xs = np.asarray(thresholds, dtype=np.float64)
    grid = np.unique(xs)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        ys = np.asarray(values, dtype=np.float64)
        means = [np.nanmean(ys[xs == x]) for x in grid]
        stds = [np.nanstd(ys[xs == x], ddof=1) if (xs == x).sum() > 1 else 0.0 for x in grid]
        line = ax.errorbar(grid, means, yerr=stds, marker="o", capsize=3, label=label)
        ax.scatter(xs, ys, color=line.lines[0].get_color(), alpha=0.4, s=14)
    ax.set_xlabel("pseudo-label confidence threshold")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def grouped_bars_figure(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str = "",
    ylabel: str = "",
    errors: Mapping[str, Sequence[float]] | None = None,
    lines: Mapping[str, float] | None = None,
) -> Figure:
    """Side-by-side bars per label, one colour per series, values printed on the bars.

    ``errors`` (per series) draws error bars; ``lines`` draws labelled horizontal lines
    (e.g. a baseline and a ceiling).
    """
    x = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, values) in enumerate(series.items()):
        yerr = None if errors is None else errors.get(name)
        offset = (i - (len(series) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, label=name, yerr=yerr, capsize=3)
        ax.bar_label(bars, fmt="%.1f" if errors else "%.0f", fontsize=7)
    for (name, value), style in zip((lines or {}).items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, color="black", linestyle=style, linewidth=1, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
