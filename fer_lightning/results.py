"""Result tables printed at the end of fer-train / fer-eval."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from fer_lightning.emotions import EMOTIONS


def pct(value: float | None) -> str:
    """A fraction as a percentage cell with one decimal; '-' where there is no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}"


ABSENT = "—"  # an emotion without a face in the evaluated split: its F1 is undefined


def absent_emotions(metrics: Mapping[str, float], stage: str = "test") -> list[str]:
    """Emotions with no face in the split (``{stage}/support_<e>`` is 0; older runs: none)."""
    return [e for e in EMOTIONS if metrics.get(f"{stage}/support_{e}", 1) == 0]


def prefix(name: str) -> str:
    """The metrics' key prefix of cross-dataset test set ``name`` (``test@fer2013/``)."""
    return f"test@{name}/"


def eval_set_names(metrics: Mapping[str, object]) -> list[str]:
    """The cross-dataset test sets a round's metrics hold, in the order they were tested."""
    ends = ("test@", "/macro_f1")
    return [
        k[len(ends[0]) : -len(ends[1])]
        for k in metrics
        if k.startswith(ends[0]) and k.endswith(ends[1])
    ]


def metrics_table(metrics: Mapping[str, float], stage: str = "test") -> str:
    """Accuracy, macro-F1 and per-emotion F1/precision/recall (in %) as a markdown table;
    an emotion absent from the split shows "—" and is named under the table."""
    absent = absent_emotions(metrics, stage)
    lines = [
        f"| {stage} | acc | macro-F1 |",
        "|---|---:|---:|",
        f"| all | {pct(metrics.get(f'{stage}/acc'))} | {pct(metrics.get(f'{stage}/macro_f1'))} |",
        "",
        "| emotion | F1 | precision | recall |",
        "|---|---:|---:|---:|",
    ]
    for e in EMOTIONS:
        cells = [pct(metrics.get(f"{stage}/{m}_{e}")) for m in ("f1", "precision", "recall")]
        lines.append(f"| {e} | " + " | ".join([ABSENT] * 3 if e in absent else cells) + " |")
    if absent:  # torchmetrics' macro-F1 counts a predicted class; an eval set's does not
        held = "" if stage.startswith("test@") else " (and any the model predicted)"
        lines.append(
            f"\n{ABSENT}: no {stage} face of {', '.join(absent)}, so no F1; macro-F1 averages "
            f"the emotions the split holds{held}"
        )
    return "\n".join(lines)


def _f1_cell(value: float | None) -> str:
    """A rounds-table F1: NaN is an emotion absent from the test split (see round_row)."""
    return ABSENT if isinstance(value, float) and math.isnan(value) else pct(value)


def rounds_table(rows: Sequence[Mapping[str, float]]) -> str:
    """The paper's before/after view: one row per round, test metrics (in %) and pseudo sets."""
    header = ["round", "macro-F1", "acc", *EMOTIONS, "pseudo added", "pseudo precision"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for r in rows:
        cells = [
            str(r["round"]),
            pct(r["test_macro_f1"]),
            pct(r["test_acc"]),
            *(_f1_cell(r[f"test_f1_{e}"]) for e in EMOTIONS),
            str(r["pseudo_added"]),
            pct(r["pseudo_precision"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _balance_reading(row: Mapping[str, float]) -> list[str]:
    """What a round's pseudo set did to the class balance, with a warning when it hurt it."""
    lines = []
    share, after = row.get("share_labeled", math.nan), row.get("share_after", math.nan)
    if not (math.isnan(share) or math.isnan(after)):
        if after > share + 1e-9:
            lines.append(
                f"WARNING: labeled + pseudo is more skewed than the labeled set (its largest "
                f"emotion is {pct(after)} % of it, against {pct(share)} % of the labeled set)."
            )
        else:
            lines.append(
                f"Balance: the largest emotion is {pct(after)} % of labeled + pseudo "
                f"({pct(share)} % of the labeled set)."
            )
    if row.get("no_pseudo") and row.get("pseudo_added"):
        lines.append(f"WARNING: no pseudo label for {row['no_pseudo'].replace(' ', ', ')}.")
    return lines


def rounds_reading(rows: Sequence[Mapping[str, float]], run_dir: str) -> str:
    """The rounds table in plain words, from the run's own numbers (printed under it)."""
    teacher, final = rows[0], rows[-1]
    lines = [
        f"Reading: the teacher (round 0, trained on {teacher['labeled']} labeled faces) reaches "
        f"{pct(teacher['test_macro_f1'])} % test macro-F1 ({pct(teacher['test_acc'])} % "
        "accuracy)."
    ]
    if len(rows) > 1:
        delta = final["test_macro_f1"] - teacher["test_macro_f1"]
        lines[0] += (
            f" The student of round {final['round']} reaches {pct(final['test_macro_f1'])} % "
            f"({_points(delta)} points; accuracy {pct(final['test_acc'])} %)."
        )
        steps = [r.get("steps", math.nan) for r in (teacher, final)]
        if not any(math.isnan(s) for s in steps) and steps[0] != steps[1]:
            lines[0] += (
                f" The student took {int(steps[1])} optimizer steps, the teacher {int(steps[0])}:"
                " part of a difference can be the longer schedule (a study gives every fit the"
                " same steps)."
            )
        changes = [
            f"{e} {pct(teacher[f'test_f1_{e}'])} -> {pct(final[f'test_f1_{e}'])} "
            f"({_points(final[f'test_f1_{e}'] - teacher[f'test_f1_{e}'])})"
            for e in EMOTIONS
        ]
        lines.append("Test F1 per emotion, teacher -> student: " + ", ".join(changes) + ".")
        for row in rows[1:]:
            added = [
                f"{e} {int(row[f'pseudo_count_{e}'])} ({pct(row[f'pseudo_precision_{e}'])} %)"
                for e in EMOTIONS
                if row.get(f"pseudo_count_{e}", 0) and not math.isnan(row[f"pseudo_count_{e}"])
            ]
            lines.append(
                f"Round {row['round']} trained on {row['pseudo_added']} pseudo-labeled pool faces, "
                f"{pct(row['pseudo_precision'])} % of them right by the pool's hidden labels "
                "(kept for this audit only, never trained on): "
                + (", ".join(added) if added else "none")
                + "."
            )
            lines.extend(_balance_reading(row))
    lines.append(
        f"Logs, checkpoints, pseudo labels: {run_dir}. Curves and the HPARAMS table: "
        f"tensorboard --logdir {run_dir}/tensorboard"
    )
    return "\n".join(lines)
