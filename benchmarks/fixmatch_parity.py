"""FixMatch parity: fer-train ``method=fixmatch`` vs a plain PyTorch FixMatch loop, side by side.

Both start from the same timm backbone and offline ImageNet file and train on the same
split (fer-train's labeled images, its pool, its validation and test sets) for the same
optimizer steps, with the same B, mu, tau, lambda_u, the same weak and strong views of the
pool faces (``weak_transform`` / ``strong_transform``, per face), the same EMA (decay
0.999 with the ``(1 + n) / (10 + n)`` warm-up) and the same label smoothing on the labeled
loss. The plain loop is what a practitioner writes from the paper: labeled faces flipped and
pad-cropped, AdamW + one-cycle, EMA evaluated on validation every labeled epoch, the best
epoch tested. The sides alternate per seed. Goal: fer-train's EMA test macro-F1 >= the
plain loop's (mean over seeds), within seed noise.

    .venv/bin/python benchmarks/fixmatch_parity.py [--seeds 1,2,3] [--steps 200] [--mu 2] [...]
"""

from __future__ import annotations

import copy
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassF1Score
from transfer_parity import _augment, _tensors, fer_train

from fer_lightning.data.images import read_rgb
from fer_lightning.data.transforms import strong_transform, weak_transform
from fer_lightning.emotions import NUM_CLASSES
from fer_lightning.models.backbones import backbone_mean_std
from fer_lightning.models.imagenet import imagenet_state_dict

from harness import REPO, build, compose_run, parity, seeded_parser, seeds_and_overrides

TAU, LAMBDA_U, DECAY = 0.95, 1.0, 0.999


class Views:
    """Weak and strong views of pool faces, each face seeded by (seed, draw)."""

    def __init__(self, paths: np.ndarray, size: int) -> None:
        self.images = [read_rgb(str(p)) for p in paths]
        self.weak, self.strong = weak_transform(size), strong_transform(size)

    def __call__(self, idx: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        weak, strong = [], []
        for i in idx.tolist():
            for transform, out, offset in ((self.weak, weak, 0), (self.strong, strong, 1)):
                s = seed * 7_919 + 2 * i + offset
                transform.set_random_state(np.random.default_rng(s), random.Random(s))
                out.append(transform(image=self.images[i])["image"])
        return torch.stack(weak), torch.stack(strong)


def plain_fixmatch(cfg, seed: int, mu: int) -> dict[str, float]:
    """FixMatch as the paper writes it, in plain PyTorch, on fer-train's split."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    datamodule, _ = build(cfg)
    splits, size = datamodule.splits, int(cfg.data.image_size)
    work = datamodule.work_size()
    backbone = str(cfg.model.backbone)
    model = timm.create_model(backbone, num_classes=1000, drop_rate=float(cfg.model.drop_rate))
    if cfg.model.weights == "imagenet":  # as fer-train's side (smoke runs: a tiny network)
        model.load_state_dict(imagenet_state_dict(model, backbone))
    model.reset_classifier(NUM_CLASSES)
    ema = copy.deepcopy(model).eval()
    mean, std = (255 * torch.tensor(v).view(1, 3, 1, 1) for v in backbone_mean_std(backbone))

    def prep(images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        return (x - mean) / std

    x, y = _tensors(splits.labeled.paths, work), torch.from_numpy(splits.labeled.labels)
    xv, yv = _tensors(splits.val.paths, work), torch.from_numpy(splits.val.labels)
    xt, yt = _tensors(splits.test.paths, work), torch.from_numpy(splits.test.labels)
    views = Views(splits.unlabeled.paths, work)
    batch, steps = int(cfg.data.batch_size), int(cfg.trainer.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)

    def macro_f1(net, images: torch.Tensor, labels: torch.Tensor) -> float:
        with torch.no_grad():
            logits = torch.cat([net(prep(b)) for b in images.split(256)])
        return float(MulticlassF1Score(NUM_CLASSES, average="macro")(logits, labels))

    best, best_state, step, draws = -1.0, None, 0, 0
    while step < steps:  # labeled epochs, the last one cut at the step budget
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(batch)[: steps - step]:
            pool = torch.randint(0, len(views.images), (mu * len(idx),), generator=g)
            weak, strong = views(pool, seed * 1_000_003 + draws)
            draws += 1
            xb = prep(_augment(x[idx], g, pad=max(1, work // 16)))
            supervised = F.cross_entropy(model(xb), y[idx], label_smoothing=0.1)
            logits_weak, logits_strong = model(prep(torch.cat([weak, strong]))).chunk(2)
            confidence, pseudo = logits_weak.detach().softmax(1).max(1)
            mask = (confidence >= TAU).float()
            unlabeled = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
            loss = supervised + LAMBDA_U * unlabeled
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            n = step - 1  # updates so far: the first one copies, as AveragedModel's does
            rate = 1.0 if n == 0 else 1 - min(DECAY, (1 + n) / (10 + n))
            with torch.no_grad():
                for e, m in zip(
                    ema.state_dict().values(), model.state_dict().values(), strict=True
                ):
                    e.lerp_(m, rate) if e.is_floating_point() else e.copy_(m)
        score = macro_f1(ema, xv, yv)
        if score > best:
            best, best_state = score, copy.deepcopy(ema.state_dict())
    ema.load_state_dict(best_state)
    test = macro_f1(ema, xt, yt)
    return {"val": best, "test": test, "steps": step, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    p = seeded_parser(__doc__)
    p.add_argument("--steps", type=int, default=200, help="optimizer steps of each side")
    p.add_argument("--mu", type=int, default=2, help="pool faces per labeled face")
    args = p.parse_args(argv)
    seeds, overrides = seeds_and_overrides(args)
    steps = 2 if args.tiny else args.steps
    budget = ["trainer.max_epochs=-1", f"trainer.max_steps={steps}", f"model.mu={args.mu}"]
    with tempfile.TemporaryDirectory(prefix="fer-fixmatch-parity-") as name:
        tmp = Path(name)
        data_dir = tmp / "data" if args.tiny else REPO / "data"
        overrides = [f"paths.data_dir={data_dir}", *overrides, *budget]

        def sides(seed: int) -> dict:
            cfg = compose_run([f"seed={seed}", "method=fixmatch", *overrides], False, tmp)
            return {
                "fer": lambda: fer_train(seed, tmp, ["method=fixmatch", *overrides], False),
                "plain": lambda: plain_fixmatch(cfg, seed, args.mu),
            }

        text = parity((seed, sides(seed)) for seed in seeds)
    print(f"fer-train method=fixmatch vs plain PyTorch FixMatch; overrides: {' '.join(overrides)}")
    print(f"tau {TAU}, lambda_u {LAMBDA_U}, EMA {DECAY}; macro-F1 in % of the EMA model\n")
    print(text)


if __name__ == "__main__":
    main()
