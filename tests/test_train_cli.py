"""fer-train / fer-eval end to end through Hydra on tiny synthetic faces."""

from __future__ import annotations

import json
import math

import pytest

from fer_lightning.emotions import EMOTIONS

from cli import run, tensorboard_tags, train

TINY = ["data.source.n_train=150", "data.source.n_test=50", "data.source.workers=1"]


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("supervised")
    proc = train(tmp, *TINY, "pseudo_label=none", "data.label_fraction=null")
    return tmp, proc


def test_train_writes_checkpoints_splits_and_metrics(supervised_run):
    tmp, proc = supervised_run
    run_dir = tmp / "run"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    for name in ("labeled", "unlabeled", "val", "test"):
        assert (run_dir / "splits" / f"{name}.csv").is_file()
    ckpts = run_dir / "round_0" / "checkpoints"
    assert (ckpts / "best.ckpt").is_file() and (ckpts / "last.ckpt").is_file()
    assert (run_dir / "round_0" / "DONE").is_file()
    metrics = json.loads((run_dir / "round_0" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/macro_f1"] <= 1.0
    assert metrics["best_checkpoint"] == str(ckpts / "best.ckpt")
    assert "| happiness |" in proc.stdout and str(run_dir) in proc.stdout


def test_tensorboard_tags_are_logged_and_finite(supervised_run):
    tmp, _ = supervised_run
    tags = tensorboard_tags(tmp / "run")["round_0"]
    expected = ["train/loss", "val/loss", "val/acc", "val/macro_f1", "test/acc", "test/macro_f1"]
    expected += [f"{stage}/f1_{e}" for stage in ("val", "test") for e in EMOTIONS]
    for tag in expected:
        assert tag in tags, tag
        assert tags[tag] and all(math.isfinite(v) for v in tags[tag]), tag
    assert "test/confusion_matrix" in tags
    assert "_hparams_/session_start_info" in tags  # HPARAMS tab: config vs final metrics


def test_eval_reproduces_the_test_metrics(supervised_run):
    tmp, _ = supervised_run
    run_dir = tmp / "run"
    metrics = json.loads((run_dir / "round_0" / "metrics.json").read_text())
    proc = run(
        "evaluate",
        [
            f"ckpt_path={run_dir / 'round_0' / 'checkpoints' / 'best.ckpt'}",
            f"hydra.run.dir={tmp / 'eval'}",
            f"paths.data_dir={tmp / 'data'}",
            *TINY,
            "data.num_workers=0",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
        ],
        tmp,
    )
    expected = f"| all | {100 * metrics['test/acc']:.1f} | {100 * metrics['test/macro_f1']:.1f} |"
    assert expected in proc.stdout


def test_wrong_override_fails_with_hydras_message(tmp_path):
    proc = train(tmp_path, "model=not_a_model", check=False)
    assert proc.returncode != 0
    assert "Could not find 'model/not_a_model'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "round_0").exists()
