"""Resume after a crash, the teacher cache and re-launched sweeps, through fer-train."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from cli import ENV, command, run, train, train_args
from layouts import make_rafdb

TRAIN = [10, 6, 6, 16, 10, 6, 10]
TEST = [3, 2, 2, 4, 3, 2, 3]
FITS = "`Trainer.fit` stopped"


def _setup(tmp, *extra):
    root = make_rafdb(tmp / "raf", TRAIN, TEST)
    return [
        "data=rafdb",
        f"data.root={root}",
        "data.label_fraction=0.4",
        "pseudo_label=topk",
        "pseudo_label.k=3",
        "pseudo_label.min_confidence=0.0",
        "pseudo_label.rounds=1",
        *extra,
    ]


def test_kill_during_round_1_then_resume_matches_an_uninterrupted_run(tmp_path):
    opts = _setup(
        tmp_path,
        "trainer.max_epochs=6",
        "trainer.deterministic=true",
        "teacher_cache=false",
        "data.num_workers=1",
    )
    train(tmp_path / "ref", *opts)
    reference = json.loads((tmp_path / "ref/run/round_1/metrics.json").read_text())

    killed = tmp_path / "killed"
    killed.mkdir()
    run_dir = killed / "run"
    last = run_dir / "round_1" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        command("train", train_args(killed, *opts)),
        cwd=killed,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not last.is_file():
            assert proc.poll() is None, "the run ended before round 1 checkpointed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (run_dir / "round_1" / "DONE").exists(), "killed too late to test a resume"
    manifest = run_dir / "pseudo_labels" / "round_1.csv"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)

    resumed = run("train", [f"resume={run_dir}", "trainer.enable_progress_bar=false"], killed)
    log = resumed.stdout + resumed.stderr
    assert "round 0: finished earlier" in log
    assert "round 1: resuming the interrupted fit" in log
    assert log.count(FITS) == 1
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    final = json.loads((run_dir / "round_1" / "metrics.json").read_text())
    for key, value in reference.items():
        if key.startswith("test/"):
            assert final[key] == value, key  # exact: every epoch's randomness is seeded
    assert (run_dir / "round_1" / "DONE").is_file()


def test_resume_refuses_overrides_that_change_the_experiment(tmp_path):
    proc = run("train", [f"resume={tmp_path}", "pseudo_label.threshold=0.5"], tmp_path, False)
    assert proc.returncode != 0 and "no .hydra/overrides.yaml" in proc.stderr
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    proc = run("train", [f"resume={tmp_path}", "pseudo_label.threshold=0.5"], tmp_path, False)
    assert proc.returncode != 0
    assert "'pseudo_label.threshold=0.5' would change the experiment" in proc.stderr


def test_teacher_cache_trains_the_teacher_once(tmp_path):
    opts = _setup(tmp_path)
    first = train(tmp_path, *opts)
    assert (first.stdout + first.stderr).count(FITS) == 2  # teacher + student
    second = train(tmp_path, *opts, "pseudo_label.k=2", "hydra.run.dir=" + str(tmp_path / "two"))
    log = second.stdout + second.stderr
    assert "teacher cache hit" in log and log.count(FITS) == 1  # the student only
    one, two = tmp_path / "run", tmp_path / "two"
    assert (one / "splits" / "val.csv").read_text() == (two / "splits" / "val.csv").read_text()
    teacher = [json.loads((d / "round_0" / "metrics.json").read_text()) for d in (one, two)]
    assert teacher[0]["test/macro_f1"] == teacher[1]["test/macro_f1"]
    assert len((two / "pseudo_labels" / "round_1.csv").read_text().splitlines()) > 1


def test_two_concurrent_jobs_share_one_teacher(tmp_path):
    opts = _setup(tmp_path)
    procs = [
        subprocess.Popen(
            command("train", train_args(tmp_path, *opts, f"hydra.run.dir={tmp_path / name}")),
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("a", "b")
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    assert sum(log.count(FITS) for log in logs) == 3  # one teacher, two students
    assert sum("teacher cache hit" in log for log in logs) == 1


@pytest.mark.parametrize("jobs", [["pseudo_label.k=1,2"]])
def test_relaunched_sweep_skips_finished_jobs(tmp_path, jobs):
    sweep = tmp_path / "sweep"
    args = ["-m", *train_args(tmp_path, *_setup(tmp_path)), *jobs, f"hydra.sweep.dir={sweep}"]
    args = [a for a in args if not a.startswith("hydra.run.dir")]
    first = run("train", args, tmp_path)
    assert (first.stdout + first.stderr).count(FITS) == 3  # teacher once (cached), 2 students
    again = run("train", args, tmp_path)
    log = again.stdout + again.stderr
    assert log.count(FITS) == 0 and log.count("round 1: finished earlier") == 2
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and "pseudo_label.k=1," in jobs[0], jobs
    assert all((sweep / job / "rounds.csv").is_file() for job in jobs)


def test_ckpt_path_continues_the_teacher_fit_and_refuses_another_backbone(tmp_path):
    root = make_rafdb(tmp_path / "raf", TRAIN, TEST)
    opts = ["data=rafdb", f"data.root={root}", "pseudo_label=none", "teacher_cache=false"]
    train(tmp_path / "first", *opts)
    ckpt = tmp_path / "first" / "run" / "round_0" / "checkpoints" / "last.ckpt"
    more = train(tmp_path / "more", *opts, f"ckpt_path={ckpt}", "trainer.max_epochs=2")
    assert f"Restoring states from the checkpoint path at {ckpt}" in more.stdout + more.stderr
    assert (more.stdout + more.stderr).count(FITS) == 1
    other = train(tmp_path / "other", *opts, f"ckpt_path={ckpt}", "model=mobilenetv2", check=False)
    assert other.returncode != 0
    assert "holds a 'mobilenetv1_100' model; this run builds 'mobilenetv2_100'" in other.stderr
