"""fer-report on fake run directories (no training): a sweep, unfinished and broken runs."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from fer_lightning.cli.report import main
from fer_lightning.emotions import EMOTIONS
from fer_lightning.report import RunSummary, threshold_plot
from fer_lightning.results import metrics_table, rounds_table
from fer_lightning.run_dir import RunDir
from tests.helpers.runs import SWEEP, make_run, make_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table_rows(stdout: str) -> dict[str, list[str]]:
    """{run name: its cells} from the first printed markdown table (the runs)."""
    first = stdout[stdout.index("| run |") :].split("\n\n", 1)[0]
    rows = [line.strip("|").split(" | ") for line in first.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_report_compares_sweep_and_flags_unfinished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs" / "train"
    make_sweep(logs / "multiruns" / "2025-01-01_00-00-00")
    runs = logs / "runs"
    running = make_run(runs / "a_running", ["trainer.max_epochs=5"], test_f1=(0.61,))
    (running / "round_1" / "checkpoints").mkdir(parents=True)  # fitting, no DONE yet
    make_run(runs / "b_incomplete", test_f1=(0.62,))  # killed between rounds
    bad_metrics = make_run(runs / "c_broken_metrics", ["seed=1"], test_f1=(0.6, 0.65))
    (bad_metrics / "round_1" / "metrics.json").write_text('{"round": 1, "test/ac')
    no_config = make_run(runs / "d_no_config", ["seed=2"], test_f1=(0.63,), student_rounds=0)
    (no_config / ".hydra" / "config.yaml").unlink()
    dead = make_run(runs / "e_dead", ["trainer.max_epochs=7"], test_f1=(0.61,))
    (dead / "round_1" / "checkpoints").mkdir(parents=True)  # killed while fitting
    with RunDir(dead).lock():
        pass  # a fer-train held it once; the kernel released it when the process died
    out = tmp_path / "report"

    with RunDir(running).lock():  # a live fer-train on a_running
        main([str(tmp_path / "logs"), "--out", str(out)])

    printed = capsys.readouterr().out
    rows = table_rows(printed)
    assert len(rows) == 8
    # teacher F1, acc | final F1, acc | 7 emotions | pseudo added, precision | val | round |
    # steps (none recorded by these hand-made runs) | status
    assert rows["data=rafdb,pseudo_label.strategy.threshold=0.8"] == [
        "60.0", "68.0", "74.0", "82.0",
        "76.0", "66.0", "69.0", "89.0", "75.0", "70.0", "73.0",
        "200", "80.0", "70.0", "2/2", "-", "done",
    ]  # fmt: skip
    assert rows["data=rafdb,pseudo_label.strategy.threshold=0.95"][2] == "70.0"
    assert rows["trainer.max_epochs=5"][2:4] == ["61.0", "69.0"]  # final = last finished round
    assert rows["trainer.max_epochs=5"][-3:] == ["0/2", "-", "running"]
    assert rows["b_incomplete"][-3:] == ["0/2", "-", "incomplete"]
    assert rows["seed=1"][-1].startswith("broken: round_1: JSONDecodeError")
    assert rows["seed=1"][2] == "60.0"  # the rounds before the damage are still shown
    assert rows["seed=2"][-3:] == ["0/?", "-", "broken: missing .hydra/config.yaml"]
    assert rows["trainer.max_epochs=7"][-3:] == ["0/2", "-", "interrupted"]
    assert "8 runs: 3 done, 1 running, 1 incomplete, 2 broken, 1 interrupted" in printed
    assert f"continue with fer-train resume={dead}" in printed
    best = "best run by validation macro-F1: data=rafdb,pseudo_label.strategy.threshold=0.9 "
    assert best in printed

    with open(out / "report.csv", newline="") as f:
        csv_rows = {r["run"]: r for r in csv.DictReader(f)}
    assert set(csv_rows) == set(rows)
    sweep_row = csv_rows["data=rafdb,pseudo_label.strategy.threshold=0.9"]
    assert float(sweep_row["threshold"]) == 0.9
    assert float(sweep_row["teacher_test_macro_f1"]) == pytest.approx(0.60)
    assert float(sweep_row["final_test_macro_f1"]) == pytest.approx(0.72)
    assert float(sweep_row["final_val_macro_f1"]) == pytest.approx(0.75)
    assert float(sweep_row["final_test_f1_fear"]) == pytest.approx(0.64)
    assert float(sweep_row["teacher_test_f1_happiness"]) == pytest.approx(0.75)
    assert sweep_row["pseudo_added"] == "200"
    assert "paths.log_dir=" in sweep_row["overrides"]  # the full overrides stay in the CSV
    assert csv_rows["b_incomplete"]["final_round"] == "0"
    assert csv_rows["seed=2"]["student_rounds"] == ""

    for name in ("macro_f1_vs_threshold", "per_emotion_f1", "confusion_teacher", "confusion_final"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert png.stat().st_size > 10_000, name
        assert f"wrote {png}" in printed


def test_names_leave_out_overrides_shared_by_all_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = make_sweep(tmp_path / "sweep")

    main([str(sweep)])

    printed = capsys.readouterr().out
    assert sorted(table_rows(printed)) == [f"pseudo_label.strategy.threshold={t}" for t in SWEEP]
    assert "overrides shared by all runs (left out above): data=rafdb\n" in printed
    with open(sweep / "report.csv", newline="") as f:
        assert [r["run"] for r in csv.DictReader(f)][0] == "pseudo_label.strategy.threshold=0.8"


def test_single_run_without_students_writes_csv_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run", test_f1=(0.6,), student_rounds=0, threshold=None)

    main([str(run)])

    rows = table_rows(capsys.readouterr().out)
    assert rows["run"][-3:] == ["0/0", "-", "done"]  # no overrides: the directory name
    assert rows["run"][0] == rows["run"][2] == "60.0"  # teacher is final
    # no threshold, no student and no confusion matrix: nothing to plot
    assert sorted(p.name for p in run.iterdir() if p.is_file()) == ["report.csv"]


@pytest.mark.parametrize("missing", [False, True])
def test_dir_without_runs_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: bool
) -> None:
    empty = tmp_path / "empty"
    if not missing:
        (empty / "some" / "folder").mkdir(parents=True)

    with pytest.raises(SystemExit) as exit_info:
        main([str(empty)])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    reason = f"{empty} is not a directory" if missing else f"no runs under {empty}"
    assert err.startswith(f"fer-report: error: {reason}")


def test_seeds_are_grouped_failed_runs_left_out_and_other_configs_kept_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    finals = {1: 0.70, 2: 0.74, 3: 0.72}
    key = "pseudo_label.strategy.threshold"
    for seed, final in finals.items():
        make_run(runs / f"seed={seed}", [f"seed={seed}"], test_f1=(0.60, final), student_rounds=1,
                 seed=seed, settings={key: 0.9})  # fmt: skip
    make_run(runs / "seed=4", ["seed=4"], test_f1=(0.61,), seed=4, student_rounds=1,
             settings={key: 0.9})  # fmt: skip  # unfinished: no student
    other = make_run(runs / "other", [f"{key}=0.5", "seed=1"], student_rounds=1,
                     test_f1=(0.60, 0.9), settings={key: 0.5})  # fmt: skip

    main([str(runs)])

    printed = capsys.readouterr().out
    groups = printed.split("Configurations over seeds", 1)[1].split("\n\n", 2)[1]
    rows = {line.split(" | ")[0].strip("| "): line for line in groups.splitlines()[2:]}
    assert len(rows) == 2  # the 0.5 run is not merged into the 0.9 seeds
    mean, std = 100 * statistics.mean(finals.values()), 100 * statistics.stdev(finals.values())
    seeds_row = next(line for name, line in rows.items() if name != f"{key}=0.5")
    assert "| 3 (+1 left out) |" in seeds_row and f"{mean:.1f} ± {std:.1f}" in seeds_row
    deltas = [100 * (f - 0.60) for f in finals.values()]
    assert f"{statistics.mean(deltas):+.1f} ± {statistics.stdev(deltas):.1f}" in seeds_row
    assert "| 3/3 |" in seeds_row
    with open(runs / "groups.csv", newline="") as f:
        by_n = {int(r["n"]): r for r in csv.DictReader(f)}
    assert "seed=4 (incomplete)" in by_n[3]["left_out"] and by_n[3]["seeds"] == "1 2 3"
    assert by_n[1]["group"].startswith("pseudo_label.strategy.threshold=0.5")
    assert other.name == "other"


def test_threshold_curve_only_for_one_strategy_over_several_thresholds(tmp_path):
    def run(strategy: str, threshold: float) -> RunSummary:
        rounds = [{"test_macro_f1": 0.5}, {"test_macro_f1": 0.6}]
        return RunSummary(
            tmp_path, strategy, [], threshold=threshold, strategy=strategy, rounds=rounds
        )

    assert threshold_plot([run("threshold", 0.8), run("threshold", 0.9)]) is not None
    assert threshold_plot([run("threshold", 0.9), run("class_threshold", 0.9)]) is None  # a study
    assert threshold_plot([run("threshold", 0.9), run("threshold", 0.9)]) is None  # seeds only


def test_best_run_is_the_highest_validation_of_every_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Teacher-only runs count; unfinished runs do not; a tie goes to the first in the table."""
    make_run(tmp_path / "a_student", ["seed=1"], final_val=0.70)
    make_run(tmp_path / "b_teacher", ["seed=2"], test_f1=(0.6,), student_rounds=0, final_val=0.8)
    make_run(tmp_path / "c_tie", ["seed=3"], test_f1=(0.6,), student_rounds=0, final_val=0.8)
    dead = make_run(tmp_path / "d_dead", ["seed=4"], test_f1=(0.6, 0.7), final_val=0.95)
    (dead / "round_2").mkdir()  # its last round never finished: not a finished run

    main([str(tmp_path), "--out", str(tmp_path / "report")])

    printed = capsys.readouterr().out
    assert table_rows(printed)["seed=4"][-1] == "interrupted"
    assert (
        "best run by validation macro-F1: seed=2 (round 0, val 80.0; rule: the highest final "
        "validation macro-F1 of the finished runs; a tie goes to the first in the table)"
    ) in printed


def test_an_emotion_absent_from_the_test_split_shows_a_dash_not_zero(tmp_path):
    run_dir = make_run(tmp_path / "run", test_f1=(0.6, 0.7))
    for k in (0, 1):
        path = run_dir / f"round_{k}" / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics |= {f"test/support_{e}": 0 if e == "fear" else 3 for e in EMOTIONS}
        path.write_text(json.dumps(metrics))
    table = metrics_table(metrics)
    assert "| fear | — | — | — |" in table and "no test face of fear, so no F1" in table
    assert table.count("| — | — | — |") == 1  # the others as they are
    rows = [RunDir(run_dir).round_row(k) for k in (0, 1)]
    assert math.isnan(rows[1]["test_f1_fear"])
    fear_cells = [line.split(" | ")[4] for line in rounds_table(rows).splitlines()[2:]]
    assert fear_cells == ["—", "—"]
