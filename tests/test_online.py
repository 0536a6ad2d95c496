"""Online methods (FixMatch, FlexMatch): the step, the thresholds, the EMA, the views, a run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from fer_lightning.callbacks.ema import warmup_ema
from fer_lightning.data.dataset import PoolDataset
from fer_lightning.data.transforms import strong_transform, weak_transform
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import ConfigError
from fer_lightning.methods.fixmatch import FixMatch, FlexMatch
from fer_lightning.models.checkpoints import load_classifier, read_checkpoint
from fer_lightning.models.classifier import FERClassifier
from fer_lightning.models.losses import soft_cross_entropy
from tests.helpers.checkpoints import TINY_BACKBONE
from tests.helpers.cli import (
    ONLINE,
    evaluate,
    fer,
    raf_args,
    tensorboard_tags,
    train,
)


def _batch(seed: int = 0, n: int = 4, mu: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    images = lambda k: torch.randint(0, 256, (k, 3, 32, 32), generator=g, dtype=torch.uint8)  # noqa: E731
    targets = torch.eye(NUM_CLASSES)[torch.arange(n) % NUM_CLASSES]
    return {
        "labeled": (images(n), targets, torch.ones(n)),
        "pool": (images(n * mu), images(n * mu), torch.arange(n * mu)),
    }


def _module(cls=FixMatch, **options) -> FixMatch:
    torch.manual_seed(0)
    model = cls(backbone=TINY_BACKBONE, image_size=32, drop_rate=0.0, **options)
    model.log = lambda *a, **k: None  # no trainer: nothing to log into
    return model


def test_lambda_u_zero_is_the_supervised_step():
    batch = _batch()
    online = _module(lambda_u=0.0).train()
    torch.manual_seed(0)
    plain = FERClassifier(backbone=TINY_BACKBONE, image_size=32, drop_rate=0.0).train()
    plain.log = lambda *a, **k: None
    plain.load_state_dict(online.state_dict())
    got, want = online.training_step(batch, 0), plain.training_step(batch["labeled"], 0)
    assert torch.equal(got, want)
    got.backward(), want.backward()
    for a, b in zip(online.parameters(), plain.parameters(), strict=True):
        assert a.grad is None and b.grad is None or torch.equal(a.grad, b.grad)


def test_targets_come_from_the_weak_view_and_the_mask_from_tau():
    batch = _batch()
    x, targets, weights = batch["labeled"]
    weak, strong, _ = batch["pool"]
    for tau in (0.0, 0.2, 1.0):
        model = _module(tau=tau, lambda_u=1.0).train()
        loss = model.training_step(batch, 0)
        # the same computation by hand: BN statistics per forward, as in the step
        with torch.no_grad():
            supervised = soft_cross_entropy(model(x), targets, weights, model.label_smoothing)
            logits_weak, logits_strong = model(torch.cat([weak, strong])).chunk(2)
            confidence, pseudo = logits_weak.softmax(1).max(1)
            mask = confidence >= tau
            unlabeled = (torch.nn.functional.cross_entropy(logits_strong, pseudo, reduction="none")
                         * mask).mean()  # fmt: skip
        assert loss.item() == pytest.approx((supervised + unlabeled).item(), rel=1e-5)
        seen, kept, _, _ = model._audit
        assert seen.sum() == len(weak) and kept.sum() == mask.sum()
        if tau == 1.0:
            assert loss.item() == pytest.approx(supervised.item(), rel=1e-5)


def test_the_pool_truth_reaches_the_audit_and_never_the_loss():
    """The pool batch holds views and indices only; the hidden labels, looked up by index
    for the audit, change the audit and nothing else."""
    batch = _batch()
    weak, strong, _ = batch["pool"]
    with torch.no_grad():  # the step's own weak-view predictions (one forward with the strong)
        pseudo = _module(tau=0.0).train()(torch.cat([weak, strong])).chunk(2)[0].argmax(1)
    losses, right = [], []
    for truth in (torch.full_like(pseudo, -1), pseudo.clone(), (pseudo + 1) % NUM_CLASSES):
        model = _module(tau=0.0).train()
        model.hidden_labels = truth
        losses.append(model.training_step(batch, 0).item())
        right.append(model._audit[3].sum().item())
    assert losses[0] == losses[1] == losses[2]
    assert right == [0, len(pseudo), 0]  # unknown, all right, all wrong


def test_flexmatch_thresholds_follow_each_class_learning_status():
    model = _module(FlexMatch, tau=0.9)
    # 10 pool faces: 4 hold happiness, 2 sadness, 4 were never confident
    happy, sad = EMOTIONS.index("happiness"), EMOTIONS.index("sadness")
    model.status = torch.tensor([happy] * 4 + [sad] * 2 + [-1] * 4)
    pseudo = torch.arange(NUM_CLASSES)
    low = torch.zeros(NUM_CLASSES)  # nobody over tau: statuses stay
    tau = model.thresholds(pseudo, low, torch.zeros(NUM_CLASSES, dtype=torch.long))
    convex = lambda b: 0.9 * b / (2 - b)  # noqa: E731
    want = torch.zeros(NUM_CLASSES)
    want[happy], want[sad] = convex(4 / 4), convex(2 / 4)  # warm-up: max(4, 2, unused 4)
    assert torch.allclose(tau, want)
    model.warmup = False
    model.status = torch.tensor([happy] * 4 + [sad] * 2 + [-1] * 20)
    tau = model.thresholds(pseudo, low, torch.zeros(NUM_CLASSES, dtype=torch.long))
    assert tau[happy] == pytest.approx(0.9) and tau[sad] == pytest.approx(convex(0.5))
    # a face over tau takes the predicted class as its status for the next step
    model.thresholds(torch.tensor([sad]), torch.tensor([0.95]), torch.tensor([7]))
    assert model.status[7] == sad


def test_options_out_of_range_are_refused_naming_the_key():
    for options, key in (({"mu": 0}, "model.mu"), ({"tau": 1.5}, "model.tau"),
                         ({"ema_decay": 1.0}, "model.ema_decay")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            _module(**options)


def test_the_ema_warms_up_then_decays_at_its_rate():
    update = warmup_ema(0.999)
    average, current = [torch.zeros(3)], [torch.ones(3)]
    update(average, current, torch.tensor(1))  # after one update: decay min(0.999, 2/11)
    assert torch.allclose(average[0], torch.full((3,), 1 - 2 / 11))
    average = [torch.zeros(3)]
    update(average, current, torch.tensor(100_000))
    assert torch.allclose(average[0], torch.full((3,), 0.001))
    steps = [torch.tensor([3])]
    update(steps, [torch.tensor([5])], torch.tensor(4))  # integer buffers follow the model
    assert steps[0].item() == 5


def _coordinates(size: int = 48) -> np.ndarray:
    ramp = np.linspace(0, 255, size)
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = ramp[None, :], ramp[:, None], 128
    return image


def test_weak_views_keep_the_face_and_strong_views_change_it_per_sample():
    image = _coordinates()
    dataset = PoolDataset(np.array(["face"] * 200), weak_transform(48), strong_transform(48),
                          read=lambda _: image)  # fmt: skip
    weak, strong = zip(*[dataset[(i, 7)][:2] for i in range(200)], strict=True)
    weak, strong = torch.stack(weak).float(), torch.stack(strong).float()
    source = torch.from_numpy(image).permute(2, 0, 1).float()
    flipped = source.flip(-1)
    # weak: a flip and a shift of at most 12.5 % (32 levels of the ramp) from the face
    error = torch.stack([(weak - s).abs().mean(dim=(1, 2, 3)) for s in (source, flipped)]).amin(0)
    assert error.max() < 32
    assert 0.3 < (weak[:, 0, :, :8].mean(dim=(1, 2)) > 128).float().mean() < 0.7  # flipped half
    # strong: further from the face, and every sample has its own operations and hole
    strong_error = torch.stack([(strong - s).abs().mean(dim=(1, 2, 3))
                                for s in (source, flipped)]).amin(0)  # fmt: skip
    assert strong_error.mean() > 2 * error.mean()
    # the cutout (a hole of 5..50 % of each side: 7.6 % of the face on average), and the
    # grey borders that rotations and shifts leave
    grey = (strong == 127).all(dim=1).float().mean(dim=(1, 2))
    assert (grey > 0).all() and 0.05 < grey.mean() < 0.2 and grey.max() < 0.6
    assert len({tuple(s.flatten().tolist()) for s in strong}) == 200
    again = torch.stack([dataset[(i, 7)][1] for i in range(3)]).float()
    assert torch.equal(again, strong[:3])  # seeded by (epoch seed, index): a resume sees it again


@pytest.fixture(scope="module")
def fixmatch_run(tmp_path_factory, raf):
    tmp = tmp_path_factory.mktemp("fixmatch")
    result = train(tmp, *raf_args(raf), "method=flexmatch", *ONLINE,
                   f"model.backbone={TINY_BACKBONE}", "model.weights=null",
                   "pseudo_label.rounds=0", "trainer.max_epochs=2")  # fmt: skip
    return tmp / "run", result


def test_an_online_run_logs_its_audit_cost_and_keeps_the_ema(fixmatch_run):
    run_dir, _ = fixmatch_run
    metrics = json.loads((run_dir / "round_0" / "metrics.json").read_text())
    rates = [metrics[f"pool/mask_{e}"] for e in EMOTIONS]
    # null (NaN) where no pool face was predicted as that emotion
    assert any(r and 0 < r <= 1 for r in rates) and all(r is None or 0 <= r <= 1 for r in rates)
    assert 0 < metrics["pool/mask_rate"] <= 1 and 0 <= metrics["pool/precision"] <= 1
    # cost: per step B labeled faces (fewer in an epoch's last batch) and 2 x mu x B pool views
    with open(run_dir / "splits" / "labeled.csv", newline="") as f:
        labeled = len(list(csv.DictReader(f)))
    batches = -(-labeled // 16)
    assert metrics["cost/images"] == 2 * (labeled + batches * 2 * 16)  # 2 epochs, mu 1
    assert metrics["cost/seconds"] > 0
    with open(run_dir / "rounds.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert float(row["online_mask"]) == pytest.approx(metrics["pool/mask_rate"])
    assert int(float(row["images"])) == metrics["cost/images"]
    tags = tensorboard_tags(run_dir)["round_0"]
    assert "pool/precision_fear" in tags and "pool/mask_rate" in tags
    ckpt = read_checkpoint(run_dir / "round_0" / "checkpoints" / "last.ckpt")
    # the state_dict is the average, the live weights beside it, FlexMatch's statuses too
    live = ckpt["current_model_state"]
    assert any(not torch.equal(v, live[k]) for k, v in ckpt["state_dict"].items()
               if k.startswith("net.") and v.is_floating_point())  # fmt: skip
    assert ckpt["flexmatch_status"].shape[0] > 0 and (ckpt["flexmatch_status"] >= 0).any()


def test_an_online_checkpoint_is_read_by_eval_predict_and_export(fixmatch_run, raf, tmp_path):
    """Its best checkpoint is an ordinary one: the EMA weights under ``net.*``."""
    run_dir, _ = fixmatch_run
    best = run_dir / "round_0" / "checkpoints" / "best.ckpt"
    assert "| all |" in evaluate(best, raf, tmp_path).stdout
    face = next((raf / "basic" / "Image" / "aligned").glob("test_*"))
    out = tmp_path / "pred.csv"
    hydra = [f"hydra.run.dir={tmp_path / 'hydra'}"]
    args = [f"ckpt_path={best}", f"inputs={face}", f"output={out}", "detector=none", *hydra]
    fer("predict", args)
    with open(out, newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["ok"]
    served = load_classifier(best)  # what fer-export exports (test_export covers the exporter)
    assert type(served) is FERClassifier
    state = read_checkpoint(best)["state_dict"]
    assert all(torch.equal(v, state[f"net.{k}"]) for k, v in served.net.state_dict().items())
