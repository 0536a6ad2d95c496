"""Teacher–student rounds through fer-train: manifests, audit, no label leak, empty rounds."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from fer_lightning.data.dataset import PredictDataset
from fer_lightning.data.splits import Splits
from fer_lightning.data.transforms import eval_transform
from fer_lightning.emotions import EMOTIONS
from fer_lightning.models.classifier import FERClassifier
from tests.helpers.cli import FAST, fer, raf_args, run, tensorboard_tags, train
from tests.helpers.layouts import RAF_TEST


@pytest.fixture
def two_rounds(rounds_run):
    return rounds_run


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rounds_write_manifests_audit_and_table(two_rounds):
    run_dir, proc = two_rounds
    for k in (0, 1, 2):
        assert (run_dir / f"round_{k}" / "DONE").is_file()
        metrics = json.loads((run_dir / f"round_{k}" / "metrics.json").read_text())
        support = [metrics[f"test/support_{e}"] for e in EMOTIONS]  # faces per emotion
        assert support == list(RAF_TEST)
    for k in (1, 2):
        rows = _read_csv(run_dir / "pseudo_labels" / f"round_{k}.csv")
        assert rows, f"round {k} selected nothing"
        columns = set(rows[0])
        assert {"path", "label", "confidence", "weight", "round", "true_label"} <= columns
        assert {f"prob_{e}" for e in EMOTIONS} <= columns
        for r in rows:
            probs = [float(r[f"prob_{e}"]) for e in EMOTIONS]
            assert abs(sum(probs) - 1) < 1e-4 and int(r["round"]) == k
        counts = np.bincount([int(r["label"]) for r in rows], minlength=7)
        assert counts.max() <= 2  # k=2 per predicted class
        text = (run_dir / "pseudo_labels" / f"round_{k}.json").read_text()
        audit = json.loads(text, parse_constant=_strict)  # NaN would fail jq and browsers
        assert audit["added"] == len(rows) and len(audit["precision"]) == 7
        labeled = [int(r["label"]) for r in _read_csv(run_dir / "splits" / "labeled.csv")]
        assert audit["labeled_count"] == np.bincount(labeled, minlength=7).tolist()
        after = np.asarray(audit["labeled_count"]) + counts  # this run turns no_skew off
        assert audit["largest_share_after"] == pytest.approx(after.max() / after.sum())
        grew = audit["largest_share_after"] > audit["largest_share_labeled"] + 1e-9
        assert audit["skewed"] == grew
    table = _read_csv(run_dir / "rounds.csv")
    assert [int(r["round"]) for r in table] == [0, 1, 2]
    assert int(table[0]["pseudo_added"]) == 0 and int(table[1]["pseudo_added"]) > 0
    for r in table:  # one epoch at batch 16 (tests/helpers/cli.py FAST): the steps each fit took
        images = int(r["labeled"]) + int(r["pseudo_added"])
        single = images % 16 == 1  # a last batch of one face is dropped (batch norm)
        assert int(float(r["steps"])) == (images // 16 if single else -(-images // 16))
    assert "| round | macro-F1 | acc | surprise |" in proc.stdout


def _strict(constant: str) -> None:
    raise AssertionError(f"{constant} in strict JSON")


def test_tensorboard_has_one_version_per_round_and_round_scalars(two_rounds):
    run_dir, _ = two_rounds
    tags = tensorboard_tags(run_dir)
    assert {"round_0", "round_1", "round_2", "rounds"} <= set(tags)
    assert len(tags["rounds"]["rounds/test_macro_f1"]) == 3
    assert len(tags["rounds"]["rounds/pseudo_added"]) == 3
    assert "rounds/pseudo_precision" in tags["rounds"]


def test_pool_truth_never_reaches_training(two_rounds):
    """Manifest labels are the teacher's argmax, also where the teacher is wrong."""
    run_dir, _ = two_rounds
    teacher = FERClassifier.load_from_checkpoint(
        run_dir / "round_0" / "checkpoints" / "best.ckpt", map_location="cpu", pretrained=False
    ).eval()
    pool = Splits.load(run_dir / "splits").unlabeled
    dataset = PredictDataset(pool.paths, eval_transform(16))  # the faces' own 16 px
    with torch.no_grad():
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        predicted = teacher.predict_probs(x, flip=True).argmax(1).numpy()
    by_path = dict(zip(pool.paths.tolist(), predicted.tolist(), strict=True))
    rows = _read_csv(run_dir / "pseudo_labels" / "round_1.csv")
    assert all(int(r["label"]) == by_path[r["path"]] for r in rows)
    wrong = [r for r in rows if int(r["label"]) != int(r["true_label"])]
    assert wrong, "the tiny noise data set should make the teacher wrong somewhere"


def test_round_that_selects_nothing_trains_on_labeled_only(tmp_path, raf):
    proc = train(
        tmp_path,
        *raf_args(raf),
        "pseudo_label=threshold",
        "pseudo_label.rounds=1",
        "pseudo_label.strategy.threshold=1.0",
    )
    rows = _read_csv(tmp_path / "run" / "rounds.csv")
    assert [int(r["pseudo_added"]) for r in rows] == [0, 0]
    assert "selected no pseudo labels" in proc.output
    audit = json.loads((tmp_path / "run" / "pseudo_labels" / "round_1.json").read_text())
    assert audit["precision_overall"] is None  # strict JSON: undefined is null, not NaN
    assert (tmp_path / "run" / "round_1" / "DONE").is_file()


def test_ddp_two_processes_predict_each_pool_image_once(tmp_path, raf):
    """2 CPU processes (gloo): gathered predictions cover the pool exactly once, one manifest."""
    args = [
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        *FAST,
        *raf_args(raf),
        "data.label_fraction=null",
        "trainer=ddp_sim",
        "data.labels_per_class=3",
        "pseudo_label=topk",
        "pseudo_label.rounds=1",
        "pseudo_label.strategy.k=1000",  # every pool image: the manifest shows the whole gather
        "pseudo_label.no_skew=false",
        "pseudo_label.strategy.min_confidence=0.0",
    ]
    proc = run("train", args, tmp_path)
    run_dir = tmp_path / "run"
    pool = Splits.load(run_dir / "splits").unlabeled
    assert len(pool) % 2 == 1  # an odd pool: DistributedSampler pads one duplicate
    rows = _read_csv(run_dir / "pseudo_labels" / "round_1.csv")
    assert sorted(r["path"] for r in rows) == sorted(pool.paths.tolist())
    teacher = FERClassifier.load_from_checkpoint(
        run_dir / "round_0" / "checkpoints" / "best.ckpt", map_location="cpu", pretrained=False
    ).eval()
    dataset = PredictDataset(pool.paths, eval_transform(16))  # the faces' own 16 px
    with torch.no_grad():
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        probs = teacher.predict_probs(x, flip=True).numpy()
    by_path = dict(zip(pool.paths.tolist(), probs, strict=True))
    for r in rows:
        p = np.sort(by_path[r["path"]])
        if p[-1] - p[-2] > 1e-4:  # a one-epoch teacher is near uniform: ties are float noise
            assert int(r["label"]) == int(by_path[r["path"]].argmax())
        assert abs(float(r["confidence"]) - by_path[r["path"]].max()) < 1e-4
    logs = [(run_dir / "train.log").read_text(), (run_dir / "train_ddp_process_1.log").read_text()]
    for rank, text in enumerate(logs):
        assert f"rank {rank}: round 1 trains on {len(pool)} pseudo labels" in text
    assert len(_read_csv(run_dir / "rounds.csv")) == 2 and proc.stdout.count("| round |") == 1


def test_an_edited_manifest_is_refused_until_selected_again(tmp_path, raf):
    """A manifest cut mid-line or shortened is never trained on while its audit says more."""
    opts = [*raf_args(raf), "pseudo_label=topk", "pseudo_label.strategy.k=20"]
    opts += ["pseudo_label.strategy.min_confidence=0.0", "pseudo_label.no_skew=false"]
    opts += ["teacher_cache=false"]
    train(tmp_path, *opts)
    run_dir = tmp_path / "run"
    manifest = run_dir / "pseudo_labels" / "round_1.csv"
    audit = manifest.with_suffix(".json")
    lines = manifest.read_text().splitlines(keepends=True)
    assert len(lines) > 4
    shutil.rmtree(run_dir / "round_1")  # as if killed before the student's fit
    manifest.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 3])  # cut mid-line
    cut = fer("train", [f"resume={run_dir}"], check=False)
    assert cut.returncode == 2 and "Traceback" not in cut.output
    assert f"{manifest}:3: not " in cut.stderr and "delete it and its audit" in cut.stderr
    manifest.write_text("".join(lines[:4]))  # whole lines, fewer than selected
    short = fer("train", [f"resume={run_dir}"], check=False)
    assert short.returncode == 2 and "Traceback" not in short.output
    assert (
        f"{manifest} holds 3 pseudo labels but its audit {audit} says {len(lines) - 1}"
    ) in short.stderr
    assert f"delete {manifest} and {audit} and resume" in short.stderr
    manifest.unlink()
    audit.unlink()
    fer("train", [f"resume={run_dir}"])  # selected again from the teacher's saved probabilities
    (row,) = [r for r in _read_csv(run_dir / "rounds.csv") if r["round"] == "1"]
    assert int(row["pseudo_added"]) == len(_read_csv(manifest)) == len(lines) - 1
