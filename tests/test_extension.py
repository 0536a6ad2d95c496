"""Extension points: a training class of one's own trains rounds, and every inference command
reads its checkpoint through what the checkpoint records about the network."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from fer_lightning.emotions import EMOTIONS
from fer_lightning.models.checkpoints import load_classifier

from cli import evaluate, fer, raf_args, train


def test_a_module_of_ones_own_trains_and_serves_eval_predict_and_export(tmp_path, raf):
    train(
        tmp_path,
        *raf_args(raf),
        "model._target_=custom_module.MarginClassifier",
        "+model.margin=0.5",
        "pseudo_label=topk",
        "pseudo_label.k=2",
        "pseudo_label.min_confidence=0.0",
    )
    run = tmp_path / "run"
    assert (run / "round_1" / "DONE").is_file()  # the teacher labeled the pool, a student fit
    ckpt = run / "round_0" / "checkpoints" / "best.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["hyper_parameters"]["margin"] == 0.5  # FERClassifier itself takes no margin
    assert saved["fer_inference"]["labels"] == list(EMOTIONS)
    assert saved["fer_inference"]["backbone"] == saved["hyper_parameters"]["backbone"]

    hydra = [f"hydra.run.dir={tmp_path / 'hydra'}"]
    evaluated = evaluate(ckpt, raf, tmp_path)
    assert "| all |" in evaluated.stdout
    face = next((raf / "basic" / "Image" / "aligned").glob("test_*"))
    out = tmp_path / "pred.csv"
    fer(
        "predict", [f"ckpt_path={ckpt}", f"inputs={face}", f"output={out}", "detector=none", *hydra]
    )
    with open(out, newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["ok"]
    onnx = tmp_path / "fer.onnx"
    fer("export", [f"ckpt_path={ckpt}", f"output={onnx}", *hydra])
    assert onnx.stat().st_size > 0


def test_a_checkpoint_without_the_inference_record_still_loads(tmp_path, tiny_checkpoint):
    """Checkpoints written before the record existed hold the same in their hyper-parameters."""
    saved = torch.load(tiny_checkpoint, weights_only=True)
    old = {key: value for key, value in saved.items() if key != "fer_inference"}
    torch.save(old, tmp_path / "old.ckpt")
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), np.uint8))
    new_model, old_model = load_classifier(tiny_checkpoint), load_classifier(tmp_path / "old.ckpt")
    assert old_model.hparams.image_size == new_model.hparams.image_size
    with torch.no_grad():
        assert torch.equal(old_model(x), new_model(x))


def test_a_checkpoint_for_other_labels_is_refused(tmp_path, tiny_checkpoint):
    saved = torch.load(tiny_checkpoint, weights_only=True)
    saved["fer_inference"]["labels"] = ["neutral", *EMOTIONS[:-1]]
    torch.save(saved, tmp_path / "other.ckpt")
    with pytest.raises(Exception, match="its labels"):
        load_classifier(tmp_path / "other.ckpt")
