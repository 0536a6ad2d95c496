"""Run directories as fer-train leaves them on disk, without training (fer-report's input)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fer_lightning.emotions import EMOTIONS

# per-emotion F1 around a round's macro-F1: happiness high, fear and disgust low (RAF-DB-like)
EMOTION_OFFSETS = (0.02, -0.08, -0.05, 0.15, 0.01, -0.04, -0.01)
SWEEP = {  # threshold: (test macro-F1 per round, final val macro-F1): best by test != best by val
    0.8: ((0.60, 0.70, 0.74), 0.70),
    0.9: ((0.60, 0.69, 0.72), 0.75),
    0.95: ((0.60, 0.66, 0.70), 0.68),
}
THRESHOLD = "fer_lightning.pseudo.strategies.Threshold"


def write_yaml(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_run(
    run_dir: Path,
    overrides: Sequence[str] = (),
    *,
    test_f1: Sequence[float] = (0.60, 0.66, 0.70),
    final_val: float = 0.7,
    student_rounds: int = 2,
    threshold: float | None = 0.9,
    override_dirname: str | None = None,
    confusion: bool = False,
    seed: int = 42,
    settings: dict | None = None,
) -> Path:
    """A run with ``len(test_f1)`` finished rounds, as fer-train leaves it on disk."""
    pseudo = f"  rounds: {student_rounds}\n  strategy:\n    _target_: {THRESHOLD}\n"
    if threshold is not None:
        pseudo += f"    threshold: {threshold}\n"
    write_yaml(run_dir / ".hydra" / "config.yaml", f"seed: {seed}\npseudo_label:\n{pseudo}")
    if settings is not None:
        record = {"settings": {**settings, "seed": seed, "data.split_seed": seed}}
        (run_dir / "experiment.json").write_text(json.dumps(record))
    write_yaml(run_dir / ".hydra" / "overrides.yaml", "".join(f"- {o}\n" for o in overrides))
    if override_dirname is not None:
        write_yaml(
            run_dir / ".hydra" / "hydra.yaml",
            f"hydra:\n  job:\n    name: train\n    override_dirname: {override_dirname}\n",
        )
    for k, f1 in enumerate(test_f1):
        rdir = run_dir / f"round_{k}"
        (rdir / "checkpoints").mkdir(parents=True)
        metrics = {
            "round": k,
            "best_checkpoint": str(rdir / "checkpoints" / "best.ckpt"),
            "val/best_macro_f1": final_val - 0.01 * (len(test_f1) - 1 - k),
            "test/acc": f1 + 0.08,
            "test/macro_f1": f1,
            "test/loss": 0.9 - f1 / 2,
        }
        for e, off in zip(EMOTIONS, EMOTION_OFFSETS, strict=True):
            metrics |= {f"test/{m}_{e}": f1 + off for m in ("f1", "precision", "recall")}
        (rdir / "metrics.json").write_text(json.dumps(metrics))
        if confusion:
            cm = [[40 if i == j else 3 for j in range(7)] for i in range(7)]
            (rdir / "confusion_matrix.json").write_text(json.dumps(cm))
        if k > 0:
            audit = {"added": 100 * k, "precision_overall": 0.9 - 0.05 * k, "count": [1] * 7}
            write_yaml(run_dir / "pseudo_labels" / f"round_{k}.json", json.dumps(audit))
        (rdir / "DONE").touch()
    return run_dir


def make_sweep(root: Path) -> Path:
    """A 3-threshold Hydra multirun: one job dir per threshold, named by override_dirname."""
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for threshold, (test_f1, val) in SWEEP.items():
        name = f"data=rafdb,pseudo_label.strategy.threshold={threshold}"
        make_run(
            root / name,
            [*name.split(","), f"paths.log_dir={root.parent}"],  # excluded from override_dirname
            test_f1=test_f1,
            final_val=val,
            threshold=threshold,
            override_dirname=name,
            confusion=True,
        )
    return root
