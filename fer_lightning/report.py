"""Compare runs: one summary per fer-train run directory, as a table, a CSV and plots.

Everything here only reads what ``fer-train`` leaves on disk (see run_dir.py), so it works
on sweeps still in progress and never imports torch. A run that is unfinished or damaged
gets a status instead of stopping the report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.experiment import group_key, job_dirname
from fer_lightning.groups import (
    BASELINE,
    CEILING,
    Group,
    ceiling_of,
    group_runs,
    is_study,
    mean_std,
)
from fer_lightning.io import atomic_path, write_csv
from fer_lightning.plots import confusion_matrix_figure, grouped_bars_figure, threshold_figure
from fer_lightning.results import eval_set_names, pct, prefix
from fer_lightning.run_dir import HYDRA_DIR, RunDir

REPORT_CSV = "report.csv"
GROUPS_CSV = "groups.csv"  # one row per configuration less the seed (groups.py)


INTERRUPTED = "interrupted"  # a round without DONE and no process on the run: resume= it
INCOMPLETE = "incomplete"  # fewer rounds than planned, none started, no process on the run
BEST_RULE = "the highest final validation macro-F1 of the finished runs; a tie goes to the first"


class NoRunsError(ValueError):
    """A directory given to the report holds no run, so it is most likely a wrong path."""


@dataclass
class RunSummary:
    """What one run directory says about itself; ``rounds`` holds its finished rounds in order.

    Each round is a dict keyed like ``rounds.csv`` (round, val_macro_f1, test_macro_f1,
    test_acc, test_f1_<emotion>, pseudo_added, pseudo_precision), so
    :func:`fer_lightning.results.rounds_table` renders it.
    """

    run_dir: Path
    name: str  # Hydra's override_dirname, the joined overrides, or the directory name
    overrides: list[str]
    status: str = "done"
    threshold: float | None = None
    strategy: str | None = None  # the class of pseudo_label.strategy (TopK, Crest, ...)
    method: str | None = None  # the class that trains each round (FERClassifier, FixMatch, ...)
    student_rounds: int | None = None  # configured pseudo_label.rounds; None without a config
    rounds: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""  # the name without the overrides all compared runs share
    seed: int | None = None
    fold: int | None = None  # data.fold of a cross-validation (data.folds), else None
    role: str | None = None  # the study role (baseline, a strategy, ceiling), if any
    group: str = ""  # digest of the experiment settings less the seed (groups.py)

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def teacher(self) -> dict[str, Any] | None:
        return self.rounds[0] if self.rounds else None

    @property
    def final(self) -> dict[str, Any] | None:
        return self.rounds[-1] if self.rounds else None

    def cost(self, key: str) -> float:
        """The whole run's ``seconds`` or ``images``: every round's, summed."""
        return sum(r.get(key, math.nan) for r in self.rounds)


def is_run_dir(path: Path) -> bool:
    """fer-train output: ``.hydra/``, a round folder or a rounds table (so a run that lost
    its config is still found and reported as broken)."""
    run = RunDir(path)
    return run.hydra.is_dir() or run.round(0).is_dir() or run.rounds_csv.is_file()


def find_runs(root: str | os.PathLike) -> list[Path]:
    """``root`` when it is a run, else every run below it at any depth, in path order."""
    root = Path(root)
    if not root.is_dir():
        raise NoRunsError(f"{root} is not a directory")
    runs = []
    for dirpath, dirnames, _ in os.walk(root):
        if is_run_dir(Path(dirpath)):
            runs.append(Path(dirpath))
            dirnames.clear()  # checkpoints and TensorBoard events hold no runs
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    if not runs:
        raise NoRunsError(
            f"no runs under {root} (a run directory holds .hydra/ or round_0/ from fer-train)"
        )
    return runs


def _yaml(path: Path) -> Any:
    """The file's YAML as plain Python, or None when the file does not exist."""
    if not path.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(path))


def _run_name(run_dir: Path, overrides: list[str]) -> str:
    """The run's sweep job name (:func:`fer_lightning.experiment.job_dirname` of its
    overrides, never cut: the labels are what sets runs apart), else the directory name."""
    hydra = (_yaml(run_dir / HYDRA_DIR / "hydra.yaml") or {}).get("hydra", {})
    naming = hydra.get("job", {}).get("config", {}).get("override_dirname", {})
    exclude = naming.get("exclude_keys") or []
    return job_dirname(overrides, exclude, limit=None) if overrides else run_dir.name


def _group_key(layout: RunDir, run: RunSummary) -> str:
    """The run's settings less the seed, hashed; without a record, its name less the seed."""
    try:
        recorded = json.loads(layout.record.read_text())["settings"]
    except (OSError, ValueError, KeyError):
        return "name:" + ",".join(i for i in run.name.split(",") if not i.startswith("seed="))
    return group_key(recorded)


def _class_name(node: dict) -> str | None:
    """The class a config node builds, by its own name (the last part of ``_target_``)."""
    target = node.get("_target_")
    return None if target is None else str(target).rsplit(".", 1)[-1]


def _reason(err: Exception) -> str:
    return f"no {err.args[0]!r}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"


def load_run(run_dir: str | os.PathLike) -> RunSummary:
    """Summarise one run; problems become its status (``running``: a process holds its lock;
    ``interrupted``: a round started, no process holds the lock; ``incomplete``: stopped
    between rounds; ``broken: <reason>``) so one bad run never hides the others."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    try:
        overrides = [str(o) for o in _yaml(run_dir / HYDRA_DIR / "overrides.yaml") or []]
        name = _run_name(run_dir, overrides)
    except Exception as err:  # any malformed Hydra file: report it, keep going
        overrides, name = [], run_dir.name
        problems.append(f".hydra: {_reason(err)}")
    run = RunSummary(run_dir, name, overrides)
    try:
        cfg = _yaml(run_dir / HYDRA_DIR / "config.yaml")
        if cfg is None:
            problems.append("missing .hydra/config.yaml")
        else:
            run.seed = cfg.get("seed")
            data = cfg.get("data") or {}
            run.fold = data.get("fold") if data.get("folds") else None
            run.role = cfg.get("study")
            pseudo = cfg.get("pseudo_label") or {}  # as run_rounds: no group = teacher only
            run.student_rounds = int(pseudo.get("rounds", 0))
            strategy = pseudo.get("strategy") or {}
            run.strategy = _class_name(strategy)  # TopK, Crest, yours
            run.method = _class_name(cfg.get("model") or {})  # FERClassifier, FixMatch, ...
            threshold = strategy.get("threshold")
            run.threshold = None if threshold is None else float(threshold)
    except Exception as err:  # unparsable YAML or odd values: report it, keep going
        problems.append(f".hydra/config.yaml: {_reason(err)}")

    layout = RunDir(run_dir)
    run.group = _group_key(layout, run)
    finished, running = layout.finished_rounds()
    for k in finished:
        try:
            run.rounds.append(layout.round_row(k))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            problems.append(f"round_{k}: {_reason(err)}")
            break

    planned = run.student_rounds is None or len(run.rounds) >= run.student_rounds + 1
    if problems:
        run.status = f"broken: {problems[0]}"
    elif running or not planned:
        # a live fer-train holds the lock; a killed one's was released by the kernel
        run.status = "running" if layout.is_locked() else INTERRUPTED if running else INCOMPLETE
    return run


def shared_overrides(runs: Sequence[RunSummary]) -> list[str]:
    """Override items in every run's name (2+ runs), e.g. a sweep's fixed ``data.root=...``."""
    if len(runs) < 2:
        return []
    common = set.intersection(*(set(r.name.split(",")) for r in runs))
    return [item for item in runs[0].name.split(",") if item in common]


def load_runs(dirs: Iterable[str | os.PathLike]) -> list[RunSummary]:
    """Every run under ``dirs`` (each a run or a sweep), once each, labelled by what sets it
    apart from the others; NoRunsError names a dir without runs."""
    seen: dict[Path, Path] = {}
    for d in dirs:
        for run_dir in find_runs(d):
            seen.setdefault(run_dir.resolve(), run_dir)
    runs = [load_run(run_dir) for run_dir in seen.values()]
    shared = set(shared_overrides(runs))
    for run in runs:
        run.label = ",".join(i for i in run.name.split(",") if i not in shared) or run.name
    return runs


def best_run(runs: Sequence[RunSummary]) -> RunSummary | None:
    """The finished run (status done, teacher-only runs included) whose final round has the
    highest VALIDATION macro-F1 (test never selects); a tie goes to the first in ``runs``
    (the table's order), see :data:`BEST_RULE`. None when no run has finished."""
    best = None
    for r in runs:
        if r.status != "done" or r.final is None or math.isnan(r.final["val_macro_f1"]):
            continue
        if best is None or r.final["val_macro_f1"] > best.final["val_macro_f1"]:
            best = r
    return best


def summary_row(run: RunSummary) -> dict[str, Any]:
    """One report.csv row: fractions (not %), empty where the run has no such value."""
    teacher, final = run.teacher or {}, run.final or {}
    row: dict[str, Any] = {
        "run": run.label,
        "status": run.status,
        "seed": run.seed,
        "fold": run.fold,
        "role": run.role,
        "group": run.group,
        "final_round": final.get("round"),
        "student_rounds": run.student_rounds,
        "strategy": run.strategy,
        "method": run.method,
        "threshold": run.threshold,
        "teacher_test_macro_f1": teacher.get("test_macro_f1"),
        "teacher_test_acc": teacher.get("test_acc"),
        "final_test_macro_f1": final.get("test_macro_f1"),
        "final_test_acc": final.get("test_acc"),
        "final_val_macro_f1": final.get("val_macro_f1"),
    }
    row.update({f"teacher_test_f1_{e}": teacher.get(f"test_f1_{e}") for e in EMOTIONS})
    row.update({f"final_test_f1_{e}": final.get(f"test_f1_{e}") for e in EMOTIONS})
    for name in eval_set_names(final):  # cross-dataset test sets: test@<name>/macro_f1
        for stage, values in (("teacher", teacher), ("final", final)):
            row[f"{stage}_{prefix(name)}macro_f1"] = values.get(prefix(name) + "macro_f1")
    row["pseudo_added"] = final.get("pseudo_added")
    row["pseudo_precision"] = final.get("pseudo_precision")
    row["final_steps"] = final.get("steps")
    for key in ("seconds", "images"):  # the whole run's cost, every round
        row[key] = run.cost(key) if run.rounds else None
    row["overrides"] = " ".join(run.overrides)
    row["run_dir"] = str(run.run_dir)
    return row


def _count(value: Any) -> str:
    """An integer cell; '-' where the run has none (older runs do not record steps)."""
    return "-" if value is None or math.isnan(float(value)) else str(int(value))


def report_table(runs: Sequence[RunSummary]) -> str:
    """Markdown table, one row per run: teacher (round 0) vs final round on test (in %),
    the final round's per-emotion F1, pseudo set and validation macro-F1."""
    header = [
        "run",
        "teacher F1",
        "teacher acc",
        "final F1",
        "final acc",
        *EMOTIONS,
        "pseudo added",
        "pseudo precision",
        "val F1",
        "round",
        "steps",
        "status",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|"]
    for run in runs:
        teacher, final = run.teacher or {}, run.final or {}
        planned = "?" if run.student_rounds is None else run.student_rounds
        cells = [
            run.label.replace("|", "\\|"),
            pct(teacher.get("test_macro_f1")),
            pct(teacher.get("test_acc")),
            pct(final.get("test_macro_f1")),
            pct(final.get("test_acc")),
            *(pct(final.get(f"test_f1_{e}")) for e in EMOTIONS),
            str(final.get("pseudo_added", "-")),
            pct(final.get("pseudo_precision")),
            pct(final.get("val_macro_f1")),
            f"{final.get('round', '-')}/{planned}",
            _count(final.get("steps")),
            run.status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eval_sets_table(runs: Sequence[RunSummary]) -> str | None:
    """Macro-F1 (%) on each cross-dataset test set (``eval_sets``), teacher and final round;
    None when no run has one. A set's macro-F1 leaves out the emotions it lacks."""
    names = list(dict.fromkeys(n for run in runs for n in eval_set_names(run.final or {})))
    if not names:
        return None
    header = ["run", *(f"{name} {stage}" for name in names for stage in ("teacher", "final"))]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for run in runs:
        teacher, final = run.teacher or {}, run.final or {}
        cells = [pct(r.get(prefix(n) + "macro_f1")) for n in names for r in (teacher, final)]
        lines.append("| " + " | ".join([run.label.replace("|", "\\|"), *cells]) + " |")
    return "\n".join(lines)


def threshold_plot(runs: Sequence[RunSummary]) -> Figure | None:
    """Teacher and final test macro-F1 against pseudo_label.strategy.threshold over the
    finished runs that have one; None unless they are one strategy swept over two thresholds
    or more (a study's strategies at one threshold each are the group plots' subject)."""
    done = [r for r in runs if r.status == "done" and r.threshold is not None]
    if len({r.strategy for r in done}) != 1 or len({r.threshold for r in done}) < 2:
        return None
    return threshold_figure(
        [r.threshold for r in done],
        {
            "teacher (round 0)": [100 * r.teacher["test_macro_f1"] for r in done],
            "final student": [100 * r.final["test_macro_f1"] for r in done],
        },
        title="Macro-F1 vs pseudo-label threshold",
        ylabel="test macro-F1 (%)",
    )


def per_emotion_plot(run: RunSummary) -> Figure:
    """The paper's before/after view: per-emotion test F1 of the teacher and the final student."""
    return grouped_bars_figure(
        EMOTIONS,
        {
            "teacher (round 0)": [100 * run.teacher[f"test_f1_{e}"] for e in EMOTIONS],
            f"student (round {run.final['round']})": [
                100 * run.final[f"test_f1_{e}"] for e in EMOTIONS
            ],
        },
        title=f"{run.label}: test F1 per emotion",
        ylabel="F1 (%)",
    )


def confusion_matrix(run_dir: Path, k: int) -> np.ndarray | None:
    """Round k's test confusion matrix (rows: true emotion), None when not saved or malformed:
    it only feeds a figure."""
    path = RunDir(run_dir).confusion_matrix(k)
    try:
        cm = np.asarray(json.loads(path.read_text()), dtype=np.int64)
    except (OSError, ValueError, TypeError):
        return None
    return cm if cm.shape == (NUM_CLASSES, NUM_CLASSES) else None


def confusion_plots(run: RunSummary) -> dict[str, Figure]:
    """{"teacher" | "final": figure} for those of the two rounds whose matrix was saved."""
    figures = {}
    for role, row in (("teacher", run.teacher), ("final", run.final)):
        if role == "final" and row is run.teacher:
            continue  # a teacher-only run: the same round
        cm = None if row is None else confusion_matrix(run.run_dir, row["round"])
        if cm is not None:
            title = f"{run.label}: round {row['round']} ({role}), test"
            figures[role] = confusion_matrix_figure(cm, EMOTIONS, title)
    return figures


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def group_plots(groups: Sequence[Group]) -> dict[str, Figure]:
    """Per-emotion change bars and macro-F1 per group (baseline, ceiling as lines)."""
    figures: dict[str, Figure] = {}
    compared = [g for g in groups if g.done and g.role not in (CEILING, BASELINE)]
    if compared:
        figures["per_emotion_change"] = grouped_bars_figure(
            EMOTIONS,
            {
                g.label: [100 * mean_std(g.paired(f"test_f1_{e}"))[0] for e in EMOTIONS]
                for g in compared
            },
            title="Test F1 change per emotion, student - baseline (mean ± std over seeds)",
            ylabel="F1 change (points)",
            errors={
                g.label: [100 * mean_std(g.paired(f"test_f1_{e}"))[1] for e in EMOTIONS]
                for g in compared
            },
        )
    done = [g for g in groups if g.done]
    if done:
        lines = {}
        base = next((g for g in done if g.role == BASELINE), None)
        if base is not None:
            lines["baseline"] = 100 * base.stat("final", "test_macro_f1")[0]
        top = ceiling_of(groups)
        if top is not None:
            lines["ceiling (all labels)"] = 100 * top.stat("final", "test_macro_f1")[0]
        figures["macro_f1_per_group"] = grouped_bars_figure(
            [g.label for g in done],
            {"final test macro-F1": [100 * g.stat("final", "test_macro_f1")[0] for g in done]},
            title="Macro-F1 per configuration (mean ± std over seeds)",
            ylabel="test macro-F1 (%)",
            errors={
                "final test macro-F1": [100 * g.stat("final", "test_macro_f1")[1] for g in done]
            },
            lines=lines,
        )
    return figures


def write_report(runs: Sequence[RunSummary], out_dir: str | os.PathLike) -> list[Path]:
    """report.csv plus the PNG plots (threshold curve; per-emotion F1 and confusion matrices
    of the best run by validation macro-F1), each written atomically; returns the paths."""
    if not runs:
        raise NoRunsError("no runs to report")
    out_dir = Path(out_dir)
    written = [write_csv(out_dir / REPORT_CSV, [summary_row(r) for r in runs])]
    groups = group_runs(runs)
    if is_study(groups):
        ceiling = ceiling_of(groups)
        written.append(write_csv(out_dir / GROUPS_CSV, [g.summary(ceiling) for g in groups]))
        for name, group_fig in group_plots(groups).items():
            written.append(_save(group_fig, out_dir / f"{name}.png"))
    fig = threshold_plot(runs)
    if fig is not None:
        written.append(_save(fig, out_dir / "macro_f1_vs_threshold.png"))
    best = best_run(runs)
    if best is not None:
        if best.final["round"] > 0:  # teacher vs student: a teacher-only run has no pair
            written.append(_save(per_emotion_plot(best), out_dir / "per_emotion_f1.png"))
        for role, cm_fig in confusion_plots(best).items():
            written.append(_save(cm_fig, out_dir / f"confusion_{role}.png"))
    return written
