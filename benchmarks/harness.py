"""What the speed benchmarks share: the run's real config, pre-loaded tensors, a bare loop.

The framework side is built from ``conf/`` exactly as ``fer-train`` builds it (Hydra
compose + instantiate), so a benchmark measures what users run, not a re-creation.

Shared machines drift by 10-30 % over seconds (seen on the 2-core development VMs), more
than the effects measured. So each benchmark repeats its sides in alternation
(``--repeats``, order rotated each time) and reports the median of the per-repeat
ratios with their range: both sides of a ratio ran minutes apart at most.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.dataset import one_hot
from fer_lightning.data.images import read_rgb
from fer_lightning.models.classifier import FERClassifier, warmup_cosine
from fer_lightning.models.losses import soft_cross_entropy

REPO = Path(__file__).resolve().parents[1]
WARMUP_BATCHES = 3  # untimed at the start of each side: allocator, workers, first-call costs
# the smoke runs (--tiny): a tiny set, and timm's tiny test network instead of MobileNetV2
TINY = [
    "data.source.n_train=200",
    "data.source.n_test=40",
    "data.source.workers=1",
    "model.backbone=test_efficientnet",
    "model.weights=null",
]


def parser(
    doc: str | None, sizes: bool = True, epochs: bool = True, repeats: bool = True
) -> argparse.ArgumentParser:
    """Options the benchmarks take (those a benchmark uses); fer-train overrides go after them."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    if sizes:
        p.add_argument("--sizes", default="64,224", help="input resolutions, comma separated")
    if epochs:
        p.add_argument("--epochs", type=int, default=2, help="epochs per side (and repeat)")
    if repeats:
        p.add_argument("--repeats", type=int, default=3, help="alternations of the sides")
    p.add_argument("--tiny", action="store_true", help="a tiny set and size (smoke test)")
    p.add_argument("overrides", nargs="*", help="fer-train overrides, e.g. trainer=gpu")
    return p


def seeded_parser(doc: str | None) -> argparse.ArgumentParser:
    """Options of the benchmarks that train over seeds; fer-train overrides go after them."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--tiny", action="store_true", help="one seed, tiny data (smoke test)")
    p.add_argument("overrides", nargs="*", help="fer-train overrides, e.g. pseudo_label=threshold")
    return p


def seeds_and_overrides(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The seeds to run and the fer-train overrides (the tiny set's first, with ``--tiny``)."""
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = list(args.overrides)
    if args.tiny:
        seeds = seeds[:1]
        overrides = [*TINY, "data.image_size=32", "trainer.max_epochs=1", *overrides]
    return seeds, overrides


def real_face_overrides(root: str | Path) -> list[str]:
    """The real-face protocol (FER2013-style class folders): 10 % labels, native 48 px, in RAM."""
    return [
        "data=folder",
        f"data.root={Path(root).resolve()}",
        "data.test_split=test",
        "data.label_fraction=0.1",
        "data.image_size=48",
        "data.cache=memory",
        "data.on_duplicate=drop",  # FER2013 holds 1,531 byte-identical copies
    ]


def compose_run(overrides: list[str], tiny: bool, tmp: Path) -> DictConfig:
    """The demo's config (synthetic faces, CPU) with the given overrides, outputs under tmp.

    The data set is cached under the repo's ``data/`` (``tmp`` for ``--tiny``) so it
    is generated once and never timed.
    """
    data_dir = tmp / "data" if tiny else REPO / "data"
    base = ["experiment=demo", f"paths.log_dir={tmp / 'logs'}", f"paths.data_dir={data_dir}"]
    extra = [*TINY, "data.batch_size=16"] if tiny else []
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*base, *extra, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / "run")
    return cfg


def build(cfg: DictConfig) -> tuple[FERDataModule, FERClassifier]:
    """The run's DataModule (split made, not written) and a fresh model, seeded."""
    torch.manual_seed(int(cfg.seed))
    datamodule: FERDataModule = instantiate(cfg.data, splits_dir=None)
    datamodule.setup()
    return datamodule, instantiate(cfg.model)


def preload(datamodule: FERDataModule, paths: np.ndarray) -> torch.Tensor:
    """Images decoded and eval-transformed once: the tensors a bare loop starts from."""
    transform = datamodule.eval_transform()
    return torch.stack([transform(image=read_rgb(str(p)))["image"] for p in paths])


def labeled_tensors(datamodule: FERDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The labeled split pre-loaded: images and one-hot targets."""
    labeled = datamodule.splits.labeled
    return preload(datamodule, labeled.paths), torch.from_numpy(one_hot(labeled.labels))


def device_and_autocast(cfg: DictConfig) -> tuple[torch.device, AbstractContextManager]:
    """Where the bare loop runs and its autocast, matching the trainer's precision."""
    accelerator = str(cfg.trainer.accelerator)
    cuda = torch.cuda.is_available() and accelerator in ("gpu", "cuda", "auto")
    device = torch.device("cuda" if cuda else "cpu")
    precision = str(cfg.trainer.precision)
    if precision.startswith(("bf16", "16")):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return device, torch.autocast(device.type, dtype=dtype)
    return device, nullcontext()


def bare_train(
    model: FERClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    epochs: int,
    cfg: DictConfig,
) -> float:
    """Images/s of a plain PyTorch loop on pre-loaded tensors, after ``WARMUP_BATCHES``.

    Same model (its ``forward``: normalisation and backbone), optimizer, schedule, loss
    and batch size as the framework's fit.
    """
    device, autocast = device_and_autocast(cfg)
    model.speed_up(device)  # channels_last / compile exactly as a fit would
    model.to(device).train()
    opt = instantiate(model.optimizer_cfg, params=model.parameters())
    steps = -(-len(x) // batch_size) * epochs
    sched = warmup_cosine(opt, steps, model.scheduler_cfg.get("warmup_fraction", 0.05))
    g = torch.Generator().manual_seed(0)
    step, images, start = 0, 0, 0.0
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            if step == WARMUP_BATCHES:
                synchronize(device)
                start = time.perf_counter()
            images += len(idx) if step >= WARMUP_BATCHES else 0
            step += 1
            xb = x[idx].to(device, non_blocking=True)
            yb = y[idx].to(device, non_blocking=True)
            with autocast:
                logits = model(xb)
            loss = soft_cross_entropy(logits.float(), yb, None, model.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    synchronize(device)
    return images / (time.perf_counter() - start)


def alternate(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run every side ``repeats`` times, in rotated order each time; values by side."""
    names = list(sides)
    values: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            values[name].append(sides[name]())
    return values


def ratio(numerator: list[float], denominator: list[float]) -> str:
    """Median of the per-repeat ratios, with their range when there are several."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    text = f"{statistics.median(ratios):.2f}"
    return text if len(ratios) == 1 else f"{text} ({min(ratios):.2f}-{max(ratios):.2f})"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="fer-bench-")


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table; floats with one decimal."""

    def cell(v: object) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


Side = Callable[[], dict[str, float]]  # one fit: its val and test macro-F1, steps and seconds


def parity(seeds: Iterable[tuple[int, dict[str, Side]]], key: str = "seed") -> str:
    """fer-train against a plain loop, per seed (or fold: ``key``), the side that goes first
    alternating: the table of both sides and the mean difference of test macro-F1 (goal >= 0)."""
    rows, diffs = [], []
    for i, (seed, sides) in enumerate(seeds):
        order = ["fer", "plain"] if i % 2 == 0 else ["plain", "fer"]
        got = {side: sides[side]() for side in order}
        fer, plain = got["fer"], got["plain"]
        diff = fer["test"] - plain["test"]
        diffs.append(diff)
        rows.append(
            [seed, fer["steps"], f"{100 * fer['val']:.1f}", f"{100 * fer['test']:.1f}",
             f"{fer['seconds']:.0f}", plain["steps"], f"{100 * plain['val']:.1f}",
             f"{100 * plain['test']:.1f}", f"{plain['seconds']:.0f}", f"{100 * diff:+.1f}"]
        )  # fmt: skip
    header = [key, "fer steps", "fer val", "fer test", "fer s", "plain steps", "plain val",
              "plain test", "plain s", "fer - plain"]  # fmt: skip
    mean = statistics.mean(diffs)
    return (
        f"{table(header, rows)}\n\nfer - plain test macro-F1: mean {100 * mean:+.1f} points, "
        f"range {100 * min(diffs):+.1f} to {100 * max(diffs):+.1f} (goal >= 0: "
        f"{'PASS' if mean >= 0 else 'MISS'})"
    )
