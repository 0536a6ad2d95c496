"""Extension points: a strategy and a training class of one's own train rounds in a sweep, and
every inference command reads the checkpoint through what it records about the network."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from fer_lightning.emotions import EMOTIONS
from fer_lightning.models.checkpoints import load_classifier
from fer_lightning.models.classifier import FERClassifier
from tests.helpers.cli import FAST, evaluate, fer, raf_args

USER_STRATEGY = """
from dataclasses import dataclass

import torch

from fer_lightning.pseudo.strategies import Inputs, Strategy


@dataclass(frozen=True)
class LeastConfident(Strategy):
    \"\"\"The n pool faces the teacher is least sure of: unlike every built-in strategy.\"\"\"

    n: int = 1

    def keep(self, probs: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        mask = torch.zeros(len(probs), dtype=torch.bool)
        mask[probs.max(dim=1).values.argsort(stable=True)[: self.n]] = True
        return mask
"""

USER_GROUP = """defaults:
  - _base_
strategy:
  _target_: user_strategy.LeastConfident
  n: 1
no_skew: false
"""


def test_a_strategy_and_a_module_of_ones_own_sweep_report_and_serve(tmp_path, raf, monkeypatch):
    """One Python module on the path and one YAML in --config-dir: a 2-job sweep of a new
    strategy, trained by a LightningModule subclass with its own step and init argument."""
    (tmp_path / "user_strategy.py").write_text(USER_STRATEGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "conf" / "pseudo_label").mkdir(parents=True)
    (tmp_path / "conf" / "pseudo_label" / "least_confident.yaml").write_text(USER_GROUP)
    fixed = [
        *raf_args(raf),
        *FAST,
        "model._target_=tests.helpers.custom_module.MarginClassifier",
        "+model.margin=0.5",
        "pseudo_label=least_confident",
    ]
    exclude = ",".join(o.lstrip("+").split("=", 1)[0] for o in fixed)
    sweep = tmp_path / "sweep"
    fer(
        "train",
        [
            "-m",
            "-cd",
            str(tmp_path / "conf"),
            "pseudo_label.strategy.n=2,5",
            f"hydra.sweep.dir={sweep}",
            f"hydra.job.config.override_dirname.exclude_keys=[{exclude}]",
            f"paths.log_dir={tmp_path / 'logs'}",
            *fixed,
        ],
    )
    jobs = {n: next(sweep.glob(f"*pseudo_label.strategy.n={n}")) for n in (2, 5)}
    for n, run in jobs.items():
        assert (run / "round_1" / "DONE").is_file()
        probs = torch.load(run / "round_0" / "teacher_probs.pt", weights_only=True)["pool"]
        with open(run / "pseudo_labels" / "round_1.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == n  # the strategy's own rule picked them
        assert probs.shape[0] > n
    report = fer("report", [str(sweep)])
    assert "pseudo_label.strategy.n=2" in report.stdout and "2 done" in report.stdout
    with open(sweep / "report.csv", newline="") as f:
        assert {row["strategy"] for row in csv.DictReader(f)} == {"LeastConfident"}

    ckpt = jobs[2] / "round_0" / "checkpoints" / "best.ckpt"
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
    # fer-export exports what load_classifier returns (test_export covers the exporter): the
    # plain network with the subclass's trained weights, whatever class trained it
    served = load_classifier(ckpt)
    assert type(served) is FERClassifier
    state = saved["state_dict"]
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    assert weights
    assert all(torch.equal(served.net.state_dict()[k], weights[k]) for k in weights)


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
