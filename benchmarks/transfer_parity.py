"""Transfer-learning parity: fer-train's teacher vs a plain PyTorch fine-tune, side by side.

Both fine-tune the same timm backbone from the same offline ImageNet file on the same
labeled split, select their best epoch on the same validation split and report macro-F1
on the same test split, with the same epochs, batch size and resolution. The plain loop
is what a practitioner writes in 60 lines: ``reset_classifier`` (PyTorch's default head
init), AdamW + one-cycle, random flip + pad-and-crop, label smoothing 0.1. The sides
alternate per seed. Goal: fer-train's test macro-F1 >= the plain loop's (mean over seeds).

``--timm-head`` runs fer-train with timm's own fresh-head initialisation (the state
before the zero-head fix), to show what it costs.

``--data DIR`` runs on a real class-folder face set (FER2013, fetched by hand, never
committed) with the real-face study's protocol (``benchmarks/real_faces.py``: 10 % labels,
48 px, in memory). Both sides train on exactly the labeled images of fer-train's split and
run the same optimizer steps: ``trainer.max_epochs=6``, or a step budget
``trainer.max_epochs=-1 trainer.max_steps=400`` (the plain loop then stops at that step).

    .venv/bin/python benchmarks/transfer_parity.py [--seeds 1,2,3] [--timm-head] [overrides]
    .venv/bin/python benchmarks/transfer_parity.py --data /tmp/fer2013 trainer.max_epochs=6

``--folds K`` compares fold by fold instead of seed by seed (one seed), for the posed sets'
subject-independent cross-validation, e.g. CK+48 (fetched by hand, never committed):

    .venv/bin/python benchmarks/transfer_parity.py --folds 10 data=ckplus data.root=/tmp/CK+48 \
        data.image_size=48 data.cache=memory trainer.max_epochs=10
"""

from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassF1Score

from fer_lightning.data.images import read_rgb
from fer_lightning.emotions import NUM_CLASSES
from fer_lightning.models.backbones import backbone_mean_std
from fer_lightning.models.imagenet import imagenet_state_dict
from fer_lightning.run_dir import RunDir

from harness import (
    REPO,
    build,
    compose_run,
    parity,
    real_face_overrides,
    seeded_parser,
    seeds_and_overrides,
)

# fer-train with timm's fresh-head init (what the framework did before the zero-head fix)
TIMM_HEAD = (
    "import fer_lightning.models.backbones as b; b.reset_head = lambda model: None; "
    "from fer_lightning.cli.train import main; main()"
)


def fer_train(
    seed: int, tmp: Path, overrides: list[str], timm_head: bool, tag: str = ""
) -> dict[str, float]:
    run_dir = tmp / f"fer-{seed}{tag}-{'timm' if timm_head else 'zero'}"
    entry = ["-c", TIMM_HEAD] if timm_head else ["-m", "fer_lightning.cli.train"]
    args = [
        "experiment=demo",
        "pseudo_label.rounds=0",
        "teacher_cache=false",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={tmp}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run([sys.executable, *entry, *args], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    metrics = RunDir(run_dir).read_metrics(0)
    return {
        "val": metrics["val/best_macro_f1"],
        "test": metrics["test/macro_f1"],
        "steps": metrics["steps"],
        "seconds": time.perf_counter() - start,
    }


def _tensors(paths: np.ndarray, size: int) -> torch.Tensor:
    images = [cv2.resize(read_rgb(p), (size, size), interpolation=cv2.INTER_AREA) for p in paths]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _augment(x: torch.Tensor, g: torch.Generator, pad: int) -> torch.Tensor:
    """Random horizontal flip and pad-and-crop (reflect padding), per image."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def plain_finetune(cfg, seed: int) -> dict[str, float]:
    """A plain PyTorch fine-tune of the same backbone on the same splits."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    datamodule, _ = build(cfg)
    splits, size = datamodule.splits, int(cfg.data.image_size)
    backbone = str(cfg.model.backbone)
    model = timm.create_model(backbone, num_classes=1000, drop_rate=float(cfg.model.drop_rate))
    if cfg.model.weights == "imagenet":  # as fer-train's side (smoke runs: a tiny network)
        model.load_state_dict(imagenet_state_dict(model, backbone))
    model.reset_classifier(NUM_CLASSES)
    mean, std = (255 * torch.tensor(v).view(1, 3, 1, 1) for v in backbone_mean_std(backbone))
    x, y = _tensors(splits.labeled.paths, size), torch.from_numpy(splits.labeled.labels)
    xv, yv = _tensors(splits.val.paths, size), torch.from_numpy(splits.val.labels)
    xt, yt = _tensors(splits.test.paths, size), torch.from_numpy(splits.test.labels)
    batch, max_steps = int(cfg.data.batch_size), int(cfg.trainer.get("max_steps", -1))
    steps = max_steps if max_steps > 0 else int(cfg.trainer.max_epochs) * -(-len(x) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)

    def macro_f1(images: torch.Tensor, labels: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model((b.float() - mean) / std) for b in images.split(256)])
        return float(MulticlassF1Score(NUM_CLASSES, average="macro")(logits, labels))

    best, best_state, step = -1.0, None, 0
    while step < steps:  # epochs, the last one cut at the step budget; val after each
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(batch)[: steps - step]:
            xb = (_augment(x[idx], g, pad=max(1, size // 16)).float() - mean) / std
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        score = macro_f1(xv, yv)
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test = macro_f1(xt, yt)
    return {"val": best, "test": test, "steps": step, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    p = seeded_parser(__doc__)
    p.add_argument("--timm-head", action="store_true", help="fer-train with timm's head init")
    p.add_argument("--data", help="a real class-folder face set (the real-face protocol)")
    p.add_argument("--folds", type=int, help="folds 0..K-1 of data.folds=K (first seed), not seeds")
    args = p.parse_args(argv)
    seeds, overrides = seeds_and_overrides(args)
    if args.data:
        overrides = [*real_face_overrides(args.data), *overrides]
    head = "timm's fresh-head init" if args.timm_head else "zero-initialised head"
    with tempfile.TemporaryDirectory(prefix="fer-parity-") as name:
        tmp = Path(name)
        data_dir = tmp / "data" if args.tiny else REPO / "data"
        overrides = [f"paths.data_dir={data_dir}", *overrides]

        def sides(seed: int, extra: list[str], tag: str = "") -> dict:
            both = [*overrides, *extra]
            cfg = compose_run([f"seed={seed}", *both], tiny=False, tmp=tmp)
            return {
                "fer": lambda: fer_train(seed, tmp, both, args.timm_head, tag),
                "plain": lambda: plain_finetune(cfg, seed),
            }

        if args.folds:  # one seed, each fold of a subject-independent cross-validation
            folds = range(args.folds)
            extra = [[f"data.folds={args.folds}", f"data.fold={f}"] for f in folds]
            runs = ((f, sides(seeds[0], extra[f], f"-fold{f}")) for f in folds)
            text = parity(runs, key="fold")
        else:
            text = parity((seed, sides(seed, [])) for seed in seeds)
    print(f"fer-train teacher ({head}) vs plain fine-tune; overrides: {' '.join(overrides)}")
    print("macro-F1 in %: best validation epoch, and test at that epoch\n")
    print(text)


if __name__ == "__main__":
    main()
