"""A study in one command: baseline, a strategy and the ceiling over two seeds, then one report."""

from __future__ import annotations

import csv
import math
import statistics

import pytest

from tests.helpers.cli import FAST, fer, fitted_rounds, raf_args

ROLES = ("baseline", "balanced", "ceiling")
SEEDS = (1, 2)


@pytest.fixture(scope="module")
def study(tmp_path_factory, raf):
    tmp = tmp_path_factory.mktemp("study")
    sweep = tmp / "sweep"
    fer(
        "train",
        [
            "-m",
            "experiment=study",
            f"hydra.sweeper.params.study='{','.join(ROLES)}'",  # quoted: one value, not a sweep
            f"hydra.sweeper.params.seed='{','.join(map(str, SEEDS))}'",
            f"hydra.sweep.dir={sweep}",
            f"paths.log_dir={tmp / 'logs'}",
            *raf_args(raf),
            *FAST,
        ],
    )
    jobs = {}
    for job in (p for p in sweep.iterdir() if p.is_dir()):
        with open(job / "rounds.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        jobs[(rows[0]["study"], int(rows[0]["seed"]))] = (job, rows)
    return sweep, jobs


def test_a_study_fits_each_teacher_once_and_names_its_jobs(study):
    _, jobs = study
    assert set(jobs) == {(role, seed) for role in ROLES for seed in SEEDS}
    for (role, seed), (job, _) in jobs.items():
        assert f"study={role}" in job.name and f"seed={seed}" in job.name
    fits = {key: fitted_rounds(job) for key, (job, _) in jobs.items()}
    # 2 teachers (the baseline's, shared with the strategy), 2 students, 2 ceilings
    assert sum(len(f) for f in fits.values()) == 6
    assert all(fits["balanced", s] == [1] and fits["ceiling", s] == [0] for s in SEEDS)
    for seed in SEEDS:  # the strategy's round 0 is the baseline's fit
        baseline, strategy = jobs["baseline", seed][1][0], jobs["balanced", seed][1][0]
        assert baseline["test_macro_f1"] == strategy["test_macro_f1"]
        assert baseline["group"] != strategy["group"]  # configurations differ, not only by seed
    assert jobs["ceiling", 1][1][0]["labeled"] > jobs["baseline", 1][1][0]["labeled"]


def test_the_ceiling_trains_the_baselines_epochs_not_its_steps(study):
    """Equal steps with every label would under-train the ceiling: its steps scale by its labels
    over the study's budget (here max_epochs=1 stops both first, as a user's epochs would)."""
    _, jobs = study
    ceiling, baseline = (int(jobs[r, 1][1][0]["labeled"]) for r in ("ceiling", "baseline"))
    expected = math.ceil(200 * ceiling / baseline)  # experiment=study: 200 steps a fit
    log = (jobs["ceiling", 1][0] / "train.log").read_text()
    assert f"study ceiling: {expected} optimizer steps, the baseline's 200 x {ceiling} " in log
    assert "study ceiling" not in (jobs["baseline", 1][0] / "train.log").read_text()


def _report_rows(text: str, title: str) -> dict[str, list[str]]:
    block = text.split(title, 1)[1].split("\n\n", 2)[1]
    rows = [line.strip("|").split(" | ") for line in block.splitlines() if line.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_the_report_groups_seeds_with_mean_std_and_paired_differences(study):
    sweep, jobs = study
    out = fer("report", [str(sweep)]).stdout
    table = _report_rows(out, "Configurations over seeds")
    final = [float(jobs["balanced", s][1][-1]["test_macro_f1"]) for s in SEEDS]
    teacher = [float(jobs["balanced", s][1][0]["test_macro_f1"]) for s in SEEDS]
    deltas = [f - t for f, t in zip(final, teacher, strict=True)]
    row = table["study=balanced"]
    assert row[0] == "2"
    assert row[2] == f"{100 * statistics.mean(final):.1f} ± {100 * statistics.stdev(final):.1f}"
    assert row[5] == f"{100 * statistics.mean(deltas):+.1f} ± {100 * statistics.stdev(deltas):.1f}"
    assert row[6] == f"{sum(d > 0 for d in deltas)}/2"
    ceiling = statistics.mean(float(jobs["ceiling", s][1][-1]["test_macro_f1"]) for s in SEEDS)
    top = ceiling - statistics.mean(teacher)
    if top > 0:
        assert row[7] == f"{100 * statistics.mean(deltas) / top:.0f} %"
    assert "best configuration by validation macro-F1 (never test): study=" in out
    assert "study=ceiling" not in out.split("best configuration")[1].splitlines()[0]
    for name in ("groups.csv", "per_emotion_change.png", "macro_f1_per_group.png"):
        assert (sweep / name).is_file(), name
    with open(sweep / "groups.csv", newline="") as f:
        groups = {r["group"]: r for r in csv.DictReader(f)}
    assert float(groups["study=balanced"]["delta_mean"]) == pytest.approx(statistics.mean(deltas))
