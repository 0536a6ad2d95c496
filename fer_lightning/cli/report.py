"""``fer-report``: compare runs and sweeps side by side (table, report.csv, PNG plots)."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence

from fer_lightning.groups import (
    best_by_validation,
    emotion_changes_table,
    group_runs,
    groups_table,
    is_study,
)
from fer_lightning.report import (
    BEST_RULE,
    INTERRUPTED,
    NoRunsError,
    best_run,
    eval_sets_table,
    load_runs,
    report_table,
    shared_overrides,
    write_report,
)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the runs table; write report.csv and the plots; exit 2 when a DIR holds no run."""
    parser = argparse.ArgumentParser(
        prog="fer-report",
        description="Compare fer-train runs: teacher vs final student test metrics per run, "
        "as a markdown table, report.csv and PNG plots.",
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="a run directory or a directory holding runs at any depth (e.g. a sweep)",
    )
    parser.add_argument("--out", help="where report.csv and the plots go (default: the first DIR)")
    args = parser.parse_args(argv)

    try:
        runs = load_runs(args.dirs)
    except NoRunsError as e:
        parser.exit(2, f"fer-report: error: {e}\n")
    print("Runs (test split, %; teacher = round 0, final = last finished round):\n")
    print(report_table(runs))
    if shared := shared_overrides(runs):
        print(f"\noverrides shared by all runs (left out above): {','.join(shared)}")
    if (cross := eval_sets_table(runs)) is not None:
        print("\nCross-dataset test sets (macro-F1 %, over the emotions each set holds):\n")
        print(cross)
    statuses = Counter(r.status.split(":")[0] for r in runs)
    print(f"\n{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in statuses.items()))
    best = best_run(runs)
    if best is not None:
        print(
            f"best run by validation macro-F1: {best.label} "
            f"(round {best.final['round']}, val {100 * best.final['val_macro_f1']:.1f}; "
            f"rule: {BEST_RULE} in the table)"
        )
    interrupted = [r for r in runs if r.status == INTERRUPTED]
    if interrupted:
        print(
            f"{INTERRUPTED}: no process holds the run's lock and a round has no DONE; "
            f"continue with fer-train resume={interrupted[0].run_dir}"
        )
    groups = group_runs(runs)
    if is_study(groups):
        paired = (
            "final - baseline is paired per seed (and fold): each run against the study's "
            "baseline run of the same seed"
            if any(g.baseline for g in groups)
            else "final - teacher is paired per seed: each student against its own teacher"
        )
        print(f"\nConfigurations over seeds (test split, %, mean ± std over the finished runs; "
              f"{paired}; train s and images: a run's whole training cost):\n")  # fmt: skip
        print(groups_table(groups))
        print("\nTest F1 change per emotion, student - baseline (points, mean ± std):\n")
        print(emotion_changes_table(groups))
        chosen = best_by_validation(groups)
        if chosen is not None:
            val = chosen.stat("final", "val_macro_f1")
            print(
                f"\nbest configuration by validation macro-F1 (never test): {chosen.label} "
                f"(val {100 * val[0]:.1f} ± {100 * val[1]:.1f}, n={len(chosen.done)})"
            )

    for path in write_report(runs, args.out or args.dirs[0]):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
