"""Result tables printed at the end of fer-train / fer-eval."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from fer_lightning.emotions import EMOTIONS


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}"


def metrics_table(metrics: Mapping[str, float], stage: str = "test") -> str:
    """Accuracy, macro-F1 and per-emotion F1/precision/recall (in %) as a markdown table."""
    lines = [
        f"| {stage} | acc | macro-F1 |",
        "|---|---:|---:|",
        f"| all | {_pct(metrics.get(f'{stage}/acc'))} | {_pct(metrics.get(f'{stage}/macro_f1'))} |",
        "",
        "| emotion | F1 | precision | recall |",
        "|---|---:|---:|---:|",
    ]
    for e in EMOTIONS:
        cells = [_pct(metrics.get(f"{stage}/{m}_{e}")) for m in ("f1", "precision", "recall")]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rounds_table(rows: Sequence[Mapping[str, float]]) -> str:
    """The paper's before/after view: one row per round, test metrics (in %) and pseudo sets."""
    header = ["round", "macro-F1", "acc", *EMOTIONS, "pseudo added", "pseudo precision"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for r in rows:
        cells = [
            str(r["round"]),
            _pct(r["test_macro_f1"]),
            _pct(r["test_acc"]),
            *(_pct(r[f"test_f1_{e}"]) for e in EMOTIONS),
            str(r["pseudo_added"]),
            _pct(r["pseudo_precision"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
