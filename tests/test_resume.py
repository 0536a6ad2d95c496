"""Resume after a crash, run-directory ownership, the teacher cache and re-launched sweeps."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_lightning.errors import RunDirError
from fer_lightning.experiment import job_dirname
from fer_lightning.run_dir import RunDir
from fer_lightning.teacher_cache import TeacherCache
from tests.helpers.checkpoints import TINY_BACKBONE
from tests.helpers.cli import (
    ENV,
    FAST,
    HELPERS,
    ONLINE,
    command,
    fer,
    fitted_rounds,
    raf_args,
    train,
    train_args,
)
from tests.helpers.killer import BOUNDARIES
from tests.helpers.layouts import (
    RAF_TEST,
    RAF_TRAIN,
    make_rafdb,
    make_unlabeled_folder,
    write_image,
)


def _rounds_csv(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "rounds.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- case 5: a run killed at any boundary resumes to exactly the uninterrupted results -----


def test_kill_at_every_boundary_then_resume_matches_an_uninterrupted_run(tmp_path, raf):
    """One run killed (-9) at each boundary in turn, each kill resumed by the next process.

    The run is online (FlexMatch rounds): besides what every round resumes (the labeled
    stream's order and augmentation, optimizer, schedule, the best checkpoint, the pseudo
    sets), the pool stream, the EMA of the weights and FlexMatch's per-face statuses do.
    """
    opts = [
        *raf_args(raf),
        "method=flexmatch",
        *ONLINE,
        "pseudo_label=topk",
        "pseudo_label.strategy.k=3",
        "pseudo_label.strategy.min_confidence=0.0",
        "pseudo_label.rounds=1",
        "trainer.max_epochs=2",  # the fit kills land at epoch 1's start: one epoch left
        "trainer.deterministic=true",
    ]
    train(tmp_path / "ref", *opts)
    reference = _rounds_csv(tmp_path / "ref" / "run")

    killed = tmp_path / "killed"
    killed.mkdir()
    run_dir = killed / "run"
    for boundary in BOUNDARIES:
        args = train_args(killed, *opts) if boundary == BOUNDARIES[0] else [f"resume={run_dir}"]
        proc = subprocess.run(
            [sys.executable, str(HELPERS / "killer.py"), boundary, *args],
            cwd=killed,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == -signal.SIGKILL, f"{boundary}: not killed\n{proc.stderr}"
    assert not (run_dir / "round_1" / "DONE").exists()
    resumed = fer("train", [f"resume={run_dir}"])
    assert "round 0: finished earlier" in resumed.output
    assert "round 1: resuming the interrupted fit" in resumed.output
    final = _rounds_csv(run_dir)
    assert [r["round"] for r in final] == ["0", "1"]
    for got, want in zip(final, reference, strict=True):
        del got["seconds"], want["seconds"]  # wall time: the one thing a resume cannot repeat
        assert got == want  # every column: metrics, pseudo counts, confidences and precision
    for k in (0, 1):  # and the losses, which move with any change of the weights
        got, want = (json.loads((d / f"round_{k}" / "metrics.json").read_text()) for d in
                     (run_dir, tmp_path / "ref" / "run"))  # fmt: skip
        kept = ("test/", "val/", "pool/", "cost/images")
        assert {m: v for m, v in got.items() if m.startswith(kept)} == {
            m: v for m, v in want.items() if m.startswith(kept)
        }


# -- cases 2 and 3: a run directory belongs to one experiment and one process -------------


def test_reusing_a_run_directory_for_another_experiment_fails_before_any_work(tmp_path, raf):
    opts = [*raf_args(raf), "pseudo_label.rounds=0"]
    train(tmp_path, *opts, "model.label_smoothing=0.1")
    run_dir = tmp_path / "run"
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    other = train(tmp_path, *opts, "model.label_smoothing=0.2", check=False)
    assert other.returncode == 2
    assert "belongs to another experiment" in other.stderr
    assert "model.label_smoothing: 0.1 -> 0.2" in other.stderr
    assert f"fer-train resume={run_dir}" in other.stderr and "new directory" in other.stderr
    assert (run_dir / ".hydra" / "config.yaml").read_text() == config  # still the owner's
    logs = ("train.log", ".lock")  # the refusal is logged; the lock was taken, then released
    assert [p for p, t in before.items() if p.stat().st_mtime_ns != t and p.name not in logs] == []
    # the same experiment on another machine setting is the same run: resumed, nothing redone
    again = fer("train", [f"resume={run_dir}", "trainer=cpu", "data.num_workers=0"])
    assert "round 0: finished earlier" in again.output
    refused = fer("train", [f"resume={run_dir}", "model.label_smoothing=0.3"], check=False)
    assert refused.returncode == 2 and "model.label_smoothing: 0.1 -> 0.3" in refused.stderr
    assert (
        f"resume={run_dir}: these settings define the experiment, so they cannot change on resume"
    ) in refused.stderr
    assert "fer-train resume=" not in refused.stderr  # what was typed is not the advice
    nothing = fer("train", [f"resume={tmp_path}"], check=False)
    assert nothing.returncode != 0 and "no .hydra/overrides.yaml there" in nothing.stderr


def test_a_second_process_on_a_run_directory_fails_at_once_naming_the_holder(tmp_path, raf):
    args = train_args(tmp_path, *raf_args(raf), "trainer.max_epochs=50", "pseudo_label.rounds=0")
    first = subprocess.Popen(
        command("train", args),
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    run_dir = tmp_path / "run"
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "round_0" / "checkpoints").is_dir():  # it holds the lock, training
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        opts = [*raf_args(raf), "trainer.max_epochs=50", "pseudo_label.rounds=0"]
        second = train(tmp_path, *opts, check=False)
        assert second.returncode == 2
        assert f"is in use by process {first.pid}" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    with RunDir(run_dir).lock():  # kill -9 leaves no stale lock
        pass


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    run = RunDir(tmp_path)
    held = pytest.raises(RunDirError, match=f"in use by process {os.getpid()}")
    with run.lock(), held, run.lock():
        pass


# -- case 1: sweep jobs never share a directory; cache entries hold what their key says ----


def test_job_names_keep_excluded_and_path_valued_keys_apart():
    a = job_dirname(["data.unlabeled_dir=/data/poolA", "seed=1", "paths.log_dir=/x"])
    b = job_dirname(["data.unlabeled_dir=/data/poolB", "seed=1", "paths.log_dir=/y"])
    assert a.startswith("data.unlabeled_dir=poolA-") and a.endswith(",seed=1") and a != b
    assert "/" not in a and "paths" not in a
    hidden = ["data.root=/raf", "seed=1"]
    swept = "pseudo_label.strategy.threshold=0.5"
    one = job_dirname([*hidden, swept], ["data.root"])
    two = job_dirname(["data.root=/other", "seed=1", swept], ["data.root"])
    assert one.startswith("excluded=") and one.endswith(f"{swept},seed=1")
    assert one != two
    assert job_dirname(["trainer.accelerator=gpu", "data.num_workers=8"]) == "defaults"
    many = [f"model.optimizer.option_{i}={i}" for i in range(20)]  # 560 characters of overrides
    long_a, long_b = job_dirname(many), job_dirname([*many[:-1], "model.optimizer.option_19=0"])
    assert len(long_a) == len(long_b) == 200 and long_a != long_b  # the hash tells them apart


def test_a_sweep_over_pools_gives_each_job_its_own_dir_and_teacher(tmp_path, raf):
    sizes = {"poolA": 5, "poolB": 12}
    pools = {name: make_unlabeled_folder(tmp_path / name, n) for name, n in sizes.items()}
    sweep = tmp_path / "sweep"
    fer(
        "train",
        [
            "-m",
            f"hydra.sweep.dir={sweep}",
            f"paths.log_dir={tmp_path / 'logs'}",
            *FAST,
            *raf_args(raf),
            "data.label_fraction=null",  # the whole pool is the extra folder
            f"data.unlabeled_dir={pools['poolA']},{pools['poolB']}",
            "pseudo_label=topk",
            "pseudo_label.strategy.k=100",
            "pseudo_label.no_skew=false",
            "pseudo_label.strategy.min_confidence=0.0",
        ],
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    for job, (name, pool) in zip(jobs, pools.items(), strict=True):
        assert f"data.unlabeled_dir={name}-" in job.name
        with open(job / "pseudo_labels" / "round_1.csv", newline="") as f:
            paths = [r["path"] for r in csv.DictReader(f)]
        assert paths and all(p.startswith(str(pool)) for p in paths)
        assert fitted_rounds(job) == [0, 1]  # each its own teacher: the keys differ
        key = RunDir(job).teacher_key()
        entry = tmp_path / "logs" / "teacher_cache" / key / "splits" / "unlabeled.csv"
        assert str(pool) in entry.read_text() and len(entry.read_text().splitlines()) > 1


def test_a_cache_entry_is_only_stored_and_restored_under_its_own_key(tmp_path, caplog):
    run = RunDir(tmp_path / "run")
    run.round(0).mkdir(parents=True)
    run.write_teacher_record("key-a", {"data.root": "/a"})
    (run.round(0) / "metrics.json").write_text("{}")
    TeacherCache(tmp_path / "cache", "key-b").store(run)  # trained under another key
    assert not (tmp_path / "cache" / "key-b").exists()
    assert "trained under key key-a; not stored" in caplog.text
    cache = TeacherCache(tmp_path / "cache", "key-a")
    cache.store(run)
    assert cache.ready
    (cache.entry / "round_0" / "teacher.json").write_text(json.dumps({"key": "key-z"}))
    assert not cache.restore(RunDir(tmp_path / "other"))
    assert "holds a teacher trained under key key-z; not used" in caplog.text


def test_a_round_whose_best_checkpoint_is_gone_is_refused_then_refitted(tmp_path, raf):
    """DONE is not trusted without best.ckpt; an interrupted fit without it starts over."""
    train(tmp_path, *raf_args(raf), "pseudo_label=none", "teacher_cache=false")
    run = RunDir(tmp_path / "run")
    before = run.read_metrics(0)
    run.best_checkpoint(0).unlink()
    refused = fer("train", [f"resume={run.root}"], check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.output
    assert (
        f"round 0 of {run.root} is marked finished ({run.done_marker(0)}) but "
        "round_0/checkpoints/best.ckpt is gone; to train that round again, delete "
        f"{run.done_marker(0)} and resume"
    ) in refused.stderr
    run.done_marker(0).unlink()  # as advised: the fit is now an interrupted one, last.ckpt kept
    again = fer("train", [f"resume={run.root}"])
    assert "cannot keep its best epoch; fitting round 0 again from the start" in again.output
    after = run.read_metrics(0)
    assert run.best_checkpoint(0).is_file() and run.is_done(0)
    assert after["test/macro_f1"] == pytest.approx(before["test/macro_f1"], abs=1e-6)
    assert after["val/best_macro_f1"] == pytest.approx(before["val/best_macro_f1"], abs=1e-6)


def test_the_teacher_cache_sees_images_rewritten_under_the_same_names(tmp_path):
    root = make_rafdb(tmp_path / "raf", RAF_TRAIN, RAF_TEST)
    opts = [*raf_args(root), "pseudo_label=none"]
    train(tmp_path, *opts, f"hydra.run.dir={tmp_path / 'a'}")
    write_image(root / "basic" / "Image" / "aligned" / "test_0001_aligned.jpg", seed=99)
    changed = train(tmp_path, *opts, f"hydra.run.dir={tmp_path / 'b'}")
    assert "teacher cache hit" not in changed.output
    assert fitted_rounds(tmp_path / "b") == [0]  # a new teacher, tested on the new picture
    same = train(tmp_path, *opts, f"hydra.run.dir={tmp_path / 'c'}")
    assert "teacher cache hit" in same.output and fitted_rounds(tmp_path / "c") == []


# -- the session sweep: one cached teacher; a relaunch skips what is finished ---------------


def test_a_sweep_trains_its_teacher_once(sweep):
    jobs = sweep.jobs()
    assert sorted(map(fitted_rounds, jobs.values())) == [[0, 1], [1]]  # one teacher, 2 students
    one, two = jobs.values()
    assert (one / "splits" / "val.csv").read_text() == (two / "splits" / "val.csv").read_text()
    teachers = [json.loads((d / "round_0" / "metrics.json").read_text()) for d in (one, two)]
    assert teachers[0]["test/macro_f1"] == teachers[1]["test/macro_f1"]
    assert sum("teacher_cache" in t for t in teachers) == 1  # the other one restored it


def test_relaunched_sweep_skips_finished_jobs(sweep):
    stamps = {p: p.stat().st_mtime_ns for p in sweep.dir.rglob("*.ckpt")}
    again = fer("train", sweep.args)
    assert again.output.count("round 1: finished earlier") == 2
    assert {p: p.stat().st_mtime_ns for p in sweep.dir.rglob("*.ckpt")} == stamps
    assert len(sweep.jobs()) == 2


def test_two_concurrent_jobs_share_one_teacher(tmp_path, raf):
    opts = [*raf_args(raf), "pseudo_label=none"]  # the teacher is what they share
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
    assert sorted(fitted_rounds(tmp_path / n) for n in ("a", "b")) == [[], [0]]
    assert sum("teacher cache hit" in log for log in logs) == 1


def test_ckpt_path_continues_the_teacher_fit_and_refuses_another_backbone(
    tmp_path, raf, rounds_run
):
    ckpt = rounds_run[0] / "round_0" / "checkpoints" / "last.ckpt"
    opts = [*raf_args(raf), "pseudo_label=none", "teacher_cache=false", f"ckpt_path={ckpt}"]
    more = train(tmp_path / "more", *opts, "trainer.max_epochs=2")
    assert "resuming the interrupted fit from " + str(ckpt) in more.output
    assert fitted_rounds(tmp_path / "more" / "run") == [0]
    other = train(tmp_path / "other", *opts, "model=mobilenetv1", check=False)
    assert other.returncode == 2
    assert f"holds a '{TINY_BACKBONE}' model; this run builds 'mobilenetv1_100'" in other.stderr
