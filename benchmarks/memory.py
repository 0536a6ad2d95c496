"""Memory: peak RSS/PSS of fer-train runs, and whether DataLoader workers grow epoch over epoch.

Runs ``fer-train`` in a subprocess per case and samples its whole process tree with psutil
every 0.25 s: RSS, PSS and USS of the main process and of every descendant. Forked
DataLoader workers share most of their pages with the main process (and with each other),
so summed RSS counts those pages once per process; summed PSS (each shared page split
between its sharers) is the honest total. A worker's USS (pages only it holds) is what
grows when it touches inherited Python objects (copy-on-access); "beyond main" (tree PSS
minus main RSS) is all the workers cost, including inherited pages the main process has
rewritten since the fork (two sibling workers still share those, so USS misses them).

Epochs are told apart by a callback added to the run (``+callbacks.memory_marker``) that
writes a timestamped line at each fit, epoch and test start/end: an epoch is its train
and val loops. This works whether loader workers restart each epoch or persist.

Cases, side by side:

* ``demo``: the demo (``experiment=demo``: 3,000 + 1,000 synthetic faces, teacher + 2 rounds);
* ``15k``: 12,271 + 3,068 images (RAF-DB's size), 2 workers, 4 epochs, 1 round (so the
  teacher also predicts the ~8.8k-image pool). Goal: peak summed PSS under 3 GiB.
* ``300k``: an AffectNet-size pool, 300,000 distinct 16 px images in ``data.unlabeled_dir``
  (generated once under ``data/``), beside 1,000 + 200 demo faces: reading and checking the
  pool, the splits, the teacher's pass over it, the selection and a 20-step student round
  (timm's tiny test network at 32 px: the pool's memory, not a network's). Same goal.

Data sets are generated before a run is measured (cached under ``data/``); logs go to a
temporary directory. ``--tiny`` runs both cases on a few hundred 32 px images, all in a
temporary directory (the smoke test).

    .venv/bin/python benchmarks/memory.py [--cases demo,15k] [--tiny] [-- fer-train overrides...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
MIB = 1024**2
GIB = 1024**3
GOAL_GIB = 3.0
INTERVAL_S = 0.25
# workers "grow" when a round's last epoch exceeds its second by more than both of these
GROWTH_MIB = 16.0
GROWTH_FRACTION = 0.10

# Generate (or find cached) the configured synthetic set: the run is then measured alone.
PREPARE = """
import sys
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from fer_lightning.cli.common import CONFIG_DIR
with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
    cfg = compose(config_name="train", overrides=sys.argv[1:])
source = instantiate(cfg.data.source)
if hasattr(source, "ensure"):
    source.ensure(cfg.data.root)
"""


def epoch_marker(path: str) -> Any:
    """A Lightning callback (built inside fer-train) appending ``<unix time> <event>`` lines.

    Lightning is imported here, not at the top, so the sampling process stays light.
    """
    import pytorch_lightning as pl

    def mark(line: str) -> None:
        with open(path, "a") as f:
            f.write(f"{time.time():.3f} {line}\n")

    def round_of(trainer: pl.Trainer) -> int:
        """The rounds loop gives each round its own checkpoint dir: ``round_<k>/checkpoints``."""
        dirpath = str(getattr(trainer.checkpoint_callback, "dirpath", None) or "")
        match = re.search(r"round_(\d+)", dirpath)
        if match:
            return int(match.group(1))
        return sum(" fit_start " in line for line in Path(path).read_text().splitlines())

    class EpochMarker(pl.Callback):
        """One per round's Trainer (fit, then test of the round's best checkpoint)."""

        k: int | None = None

        def _round(self, trainer: pl.Trainer) -> int:
            if self.k is None:
                self.k = round_of(trainer)
            return self.k

        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            mark(f"fit_start r{self._round(trainer)}")

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
            mark(f"epoch_start r{self._round(trainer)} e{trainer.current_epoch + 1}")

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
            mark(f"epoch_end r{self._round(trainer)} e{trainer.current_epoch + 1}")

        def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            mark(f"fit_end r{self._round(trainer)}")  # the pool prediction callback runs next

        def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            mark(f"test_start r{self._round(trainer)}")

        def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            mark(f"test_end r{self._round(trainer)}")

    return EpochMarker()


@dataclass
class Case:
    """One fer-train configuration to measure."""

    name: str
    images: int
    overrides: list[str]
    pool: int = 0  # extra unlabeled faces (data.unlabeled_dir), generated once under data/


def make_cases(tiny: bool) -> dict[str, Case]:
    """The benchmark's cases; ``tiny`` shrinks them to seconds (same code paths)."""
    if tiny:
        small = [
            "data.source.n_train=120",
            "data.source.n_test=30",
            "data.source.workers=1",
            "data.image_size=32",
            "data.batch_size=16",
            "data.num_workers=2",
            "trainer.max_epochs=2",
            "model.backbone=test_efficientnet",  # timm's tiny test network
            "model.weights=null",
        ]
        return {
            "demo": Case("demo", 150, [*small, "pseudo_label.rounds=0"]),
            "15k": Case("15k", 150, [*small, "pseudo_label.rounds=1"]),
            "300k": Case("300k", 2150, [*small, *POOL_CASE], pool=2000),
        }
    return {
        "demo": Case("demo", 4000, []),
        "15k": Case(
            "15k",
            12271 + 3068,
            [
                "data.source.n_train=12271",
                "data.source.n_test=3068",
                "data.source.workers=2",
                "data.num_workers=2",
                "trainer.max_epochs=4",
                "pseudo_label.rounds=1",
            ],
        ),
        "300k": Case(
            "300k",
            300_000 + 1200,
            [
                "data.source.n_train=1000",
                "data.source.n_test=200",
                "data.source.workers=2",
                "data.image_size=32",
                "data.num_workers=2",
                "model.backbone=test_efficientnet",  # the pool's memory, not a network's
                "model.weights=null",
                *POOL_CASE,
            ],
            pool=300_000,
        ),
    }


# An AffectNet-size pool: a teacher on the demo's labels, then its pass over the pool, the
# selection and a short student round on the pseudo set.
POOL_CASE = ["pseudo_label.rounds=1", "trainer.max_epochs=-1", "trainer.max_steps=20"]


def make_pool(root: Path, n: int) -> Path:
    """``n`` distinct 16 px faces-to-be (noise: every file unique, as duplicates are refused),
    in folders of 10,000, written once (a finished folder is marked DONE)."""
    if (root / "DONE").is_file():
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"{i // 10_000:03d}" / f"pool_{i:07d}.png"
        if i % 10_000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (root / "DONE").write_text(f"{n}\n")
    return root


@dataclass
class Sample:
    """One look at the process tree (bytes); ``workers`` maps (pid, birth) to (USS, PSS).

    ``alone`` is the tree's total as if no process outside it shared its library pages:
    anonymous + shmem PSS over the tree (such pages are shared only by fork, so within
    the tree) plus the main process's file-backed RSS in full. Plain summed PSS drops
    when other jobs on the machine map the same torch libraries. ``beyond_main`` is the
    anonymous + shmem memory the main process does not map: all the workers add.
    """

    t: float
    main_rss: int
    rss_sum: int
    pss_sum: int
    alone: int
    beyond_main: int
    workers: dict[tuple[int, float], tuple[int, int]]


@dataclass
class Result:
    """What one run measured; times are seconds since the run started."""

    wall_s: float
    main_hwm: int  # the kernel's high-water mark of the main process (VmHWM), else sampled
    samples: list[Sample]
    events: list[tuple[float, str]] = field(default_factory=list)


def proc_kib(path: str, fields: tuple[str, ...]) -> dict[str, int] | None:
    """``Field: N kB`` lines of a /proc file, in bytes; None where unreadable (not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found = dict(re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE))
    return {f: int(found.get(f, 0)) * 1024 for f in fields}


@dataclass
class Mem:
    """One process's memory (bytes)."""

    rss: int
    pss: int
    uss: int
    anon_pss: int  # anonymous + shmem PSS


def read_mem(proc: psutil.Process) -> Mem:
    """From smaps_rollup, read once for all fields; psutil's memory_full_info elsewhere."""
    rollup = proc_kib(
        f"/proc/{proc.pid}/smaps_rollup",
        ("Rss", "Pss", "Pss_Anon", "Pss_Shmem", "Private_Clean", "Private_Dirty"),
    )
    if rollup is not None and rollup["Rss"]:
        return Mem(
            rollup["Rss"],
            rollup["Pss"],
            rollup["Private_Clean"] + rollup["Private_Dirty"],
            rollup["Pss_Anon"] + rollup["Pss_Shmem"],
        )
    info = proc.memory_full_info()
    pss = getattr(info, "pss", info.uss)
    return Mem(info.rss, pss, info.uss, pss)


class TreeSampler(threading.Thread):
    """Samples the process tree of ``pid`` every ``INTERVAL_S`` until stopped."""

    def __init__(self, pid: int, start_t: float) -> None:
        super().__init__(daemon=True)
        self.main = psutil.Process(pid)
        self.start_t = start_t
        self.samples: list[Sample] = []
        self.hwm = 0
        self._stop_event = threading.Event()
        self._is_worker: dict[tuple[int, float], bool] = {}

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        while True:
            self._sample()
            if self._stop_event.wait(INTERVAL_S):
                return

    def _worker(self, proc: psutil.Process, key: tuple[int, float]) -> bool:
        """A DataLoader worker: a direct child forked from the main process (same cmdline).

        The main cmdline is read here, not at start: right after Popen the child may
        not have exec'd yet and still show this script's cmdline.
        """
        if key not in self._is_worker:
            self._is_worker[key] = (
                proc.ppid() == self.main.pid and proc.cmdline() == self.main.cmdline()
            )
        return self._is_worker[key]

    def _sample(self) -> None:
        t = time.time() - self.start_t
        try:
            procs = [self.main, *self.main.children(recursive=True)]
        except psutil.Error:
            return
        status = proc_kib(
            f"/proc/{self.main.pid}/status", ("VmHWM", "RssAnon", "RssFile", "RssShmem")
        )
        main: Mem | None = None
        rss_sum = pss_sum = anon_pss = 0
        workers: dict[tuple[int, float], tuple[int, int]] = {}
        for proc in procs:
            try:
                mem = read_mem(proc)
                key = (proc.pid, proc.create_time())
                worker = proc is not self.main and self._worker(proc, key)
            except psutil.Error:  # vanished between listing and reading, or not ours
                continue
            if not mem.rss:
                continue  # exiting: its memory is already released
            rss_sum += mem.rss
            pss_sum += mem.pss
            anon_pss += mem.anon_pss
            if proc is self.main:
                main = mem
            elif worker:
                workers[key] = (mem.uss, mem.pss)
        if main is None:
            return  # the main process has exited
        if status is not None and status["RssFile"]:
            alone = anon_pss + status["RssFile"]
            beyond = anon_pss - status["RssAnon"] - status["RssShmem"]
        else:  # no /proc breakdown: plain PSS
            alone, beyond = pss_sum, pss_sum - main.rss
        self.hwm = max(self.hwm, status["VmHWM"] if status else 0, main.rss)
        self.samples.append(Sample(t, main.rss, rss_sum, pss_sum, alone, beyond, workers))


def prepare(overrides: list[str]) -> None:
    """Generate the case's data set before it is measured (a no-op when cached)."""
    non_hydra = [o for o in overrides if not o.startswith("hydra.")]
    subprocess.run(
        [sys.executable, "-c", PREPARE, *non_hydra],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def read_events(path: Path, start_t: float) -> list[tuple[float, str]]:
    """The marker callback's lines as (seconds since start, event)."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        stamp, _, event = line.partition(" ")
        events.append((float(stamp) - start_t, event))
    return events


def measure(
    case: Case, tmp: Path, data_dir: Path, extra: list[str], env: dict[str, str] | None = None
) -> Result:
    """Run fer-train for ``case`` under the sampler; logs stay under ``tmp``."""
    marks = tmp / f"{case.name}.events"
    pool = []
    if case.pool:
        folder = make_pool(data_dir / f"memory-pool-{case.pool}", case.pool)
        pool = [f"data.unlabeled_dir={folder}"]
    overrides = [
        "experiment=demo",  # as `make demo`: synthetic faces on CPU
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={tmp / case.name / 'logs'}",
        f"hydra.run.dir={tmp / case.name / 'run'}",
        "teacher_cache=false",
        "trainer.enable_progress_bar=false",
        *case.overrides,
        *pool,
        *extra,
    ]
    prepare(overrides)
    marker = [
        "+callbacks.memory_marker._target_=benchmarks.memory.epoch_marker",
        f"+callbacks.memory_marker.path={marks}",
    ]
    log_path = tmp / f"{case.name}.log"
    cmd = [sys.executable, "-m", "fer_lightning.cli.train", *overrides, *marker]
    start_t = time.time()
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid, start_t)
        sampler.start()
        code = proc.wait()
        wall = time.perf_counter() - start
        sampler.stop()
    if code != 0:
        tail = log_path.read_text().splitlines()[-40:]
        sys.exit(f"fer-train failed ({code}) for case {case.name}:\n" + "\n".join(tail))
    return Result(wall, sampler.hwm, sampler.samples, read_events(marks, start_t))


# -- analysis ----------------------------------------------------------------------------


@dataclass
class Segment:
    """The samples of one stretch of a run: an epoch (train + val), a pool prediction, a test."""

    name: str
    start: float
    end: float
    workers_uss_peak: int = 0  # summed USS of the workers alive
    worker_uss_peak: int = 0  # the largest USS of any one worker
    tree_pss_peak: int = 0
    alone_peak: int = 0  # the tree's total as if alone (see Sample)
    beyond_main_peak: int = 0  # what the workers add (see Sample)
    main_rss_peak: int = 0
    samples: int = 0


def segments(result: Result) -> list[Segment]:
    """Epochs (``r<k> e<n>``), ``r<k> pool prediction`` (fit end to test start, where the
    pseudo-label callback predicts the pool when a round follows, else ``r<k> fit end``)
    and ``r<k> test``, from the marker events.
    """
    opened: dict[str, float] = {}
    segs: list[Segment] = []
    for t, event in result.events:
        kind, _, what = event.partition(" ")
        if kind in ("epoch_start", "test_start"):
            if kind == "test_start" and f"fit_end {what}" in opened:
                nxt = f"fit_start r{int(what[1:]) + 1}"
                stage = "pool prediction" if any(e == nxt for _, e in result.events) else "fit end"
                segs.append(Segment(f"{what} {stage}", opened.pop(f"fit_end {what}"), t))
            opened[event] = t
        elif kind == "fit_end":
            opened[event] = t
        elif kind in ("epoch_end", "test_end"):
            begin = opened.pop(event.replace("_end", "_start"), None)
            if begin is not None:
                name = what if kind == "epoch_end" else f"{what} test"
                segs.append(Segment(name, begin, t))
    for seg in segs:
        for s in result.samples:
            if seg.start <= s.t <= seg.end:
                seg.samples += 1
                seg.workers_uss_peak = max(
                    seg.workers_uss_peak, sum(uss for uss, _ in s.workers.values())
                )
                seg.worker_uss_peak = max(
                    seg.worker_uss_peak, max((uss for uss, _ in s.workers.values()), default=0)
                )
                seg.tree_pss_peak = max(seg.tree_pss_peak, s.pss_sum)
                seg.alone_peak = max(seg.alone_peak, s.alone)
                seg.beyond_main_peak = max(seg.beyond_main_peak, s.beyond_main)
                seg.main_rss_peak = max(seg.main_rss_peak, s.main_rss)
    return segs


def epochs_by_round(result: Result) -> dict[int, list[Segment]]:
    """The sampled epoch segments (``r<k> e<n>``) of each round, in order."""
    rounds: dict[int, list[Segment]] = defaultdict(list)
    for seg in segments(result):
        match = re.fullmatch(r"r(\d+) e\d+", seg.name)
        if match and seg.samples:
            rounds[int(match.group(1))].append(seg)
    return dict(rounds)


def worker_growth(result: Result) -> tuple[float | None, float | None, bool]:
    """(largest epoch-2-to-last growth, largest epoch-1-to-2 step, grows) in MiB.

    The figure is the per-epoch peak of the workers' summed USS. Epoch 1 is left out of
    the verdict: workers are forked during it (the val workers only at its end), so it
    has fewer workers for most of its samples (its step to epoch 2 is reported). From
    epoch 2 on the same workers are alive (or the same number, if the train loader's
    restart each epoch): growth then is what would accumulate over a long run.
    """
    worst: float | None = None
    step: float | None = None
    grows = False
    for epochs in epochs_by_round(result).values():
        peaks = [seg.workers_uss_peak / MIB for seg in epochs]
        if len(peaks) >= 2:
            step = max(step or float("-inf"), peaks[1] - peaks[0])
        if len(peaks) >= 3 and peaks[1] > 0:
            delta = peaks[-1] - peaks[1]
            worst = delta if worst is None else max(worst, delta)
            grows |= delta > max(GROWTH_MIB, GROWTH_FRACTION * peaks[1])
    return worst, step, grows


def worker_lifetimes(result: Result) -> dict[tuple[int, float], list[tuple[float, int, int]]]:
    """Each worker's samples, (time, USS, PSS), in order."""
    seen: dict[tuple[int, float], list[tuple[float, int, int]]] = defaultdict(list)
    for s in result.samples:
        for key, (uss, pss) in s.workers.items():
            seen[key].append((s.t, uss, pss))
    return dict(seen)


def fmt_gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def fmt_mib(n: float) -> str:
    return f"{n / MIB:.0f}"


def table(results: dict[str, Result], cases: dict[str, Case]) -> list[str]:
    """The side-by-side markdown table, one column per case."""
    rows: dict[str, list[str]] = defaultdict(list)
    for name, r in results.items():
        lives = worker_lifetimes(r)
        longest = max(lives.values(), key=lambda v: v[-1][0] - v[0][0], default=None)
        growth, step, _ = worker_growth(r)
        rows["images (train + test)"].append(f"{cases[name].images:,}")
        rows["wall time (s)"].append(f"{r.wall_s:.0f}")
        rows["samples"].append(str(len(r.samples)))
        rows["peak RSS, main process (GiB)"].append(fmt_gib(r.main_hwm))
        rows["peak total as if alone, process tree (GiB)"].append(
            fmt_gib(max((s.alone for s in r.samples), default=0))
        )
        rows["peak summed PSS, process tree (GiB)"].append(
            fmt_gib(max((s.pss_sum for s in r.samples), default=0))
        )
        rows["peak summed RSS, process tree (GiB)"].append(
            fmt_gib(max((s.rss_sum for s in r.samples), default=0))
        )
        rows["DataLoader worker processes seen"].append(str(len(lives)))
        rows["peak summed USS of the workers (MiB)"].append(
            fmt_mib(max((sum(u for u, _ in s.workers.values()) for s in r.samples), default=0))
        )
        rows["peak USS / PSS of one worker (MiB)"].append(
            f"{fmt_mib(max((u for v in lives.values() for _, u, _ in v), default=0))} / "
            f"{fmt_mib(max((p for v in lives.values() for _, _, p in v), default=0))}"
        )
        rows["peak memory the workers add, beyond main (MiB)"].append(
            fmt_mib(max((s.beyond_main for s in r.samples), default=0))
        )
        rows["worker USS first -> last seen, median (MiB)"].append(
            f"{fmt_mib(statistics.median(v[0][1] for v in lives.values()))} -> "
            f"{fmt_mib(statistics.median(v[-1][1] for v in lives.values()))}"
            if lives
            else "n/a"
        )
        rows["longest-lived worker: USS first -> last (peak), MiB"].append(
            f"{longest[-1][0] - longest[0][0]:.0f} s: {fmt_mib(longest[0][1])} -> "
            f"{fmt_mib(longest[-1][1])} ({fmt_mib(max(u for _, u, _ in longest))})"
            if longest
            else "n/a"
        )
        rows["workers' summed USS, epoch 1 -> 2 step (MiB)"].append(
            "n/a" if step is None else f"{step:+.0f}"
        )
        rows["workers' summed USS, epoch 2 -> last growth (MiB)"].append(
            "n/a" if growth is None else f"{growth:+.0f}"
        )
    names = list(results)
    lines = [f"| metric | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    lines += [f"| {metric} | {' | '.join(values)} |" for metric, values in rows.items()]
    return lines


def report(results: dict[str, Result], cases: dict[str, Case], tiny: bool) -> None:
    """Print the table, the 3 GiB goal line and the worker growth lines."""
    print(
        "fer-train memory, sampled every "
        f"{INTERVAL_S} s{' (TINY sizes: a smoke run, not the real figures)' if tiny else ''}"
    )
    print(
        "PSS splits each shared page between its sharers; USS = pages only that process "
        "holds; main-process peak RSS = the kernel's VmHWM. Total as if alone = anonymous + "
        "shmem PSS of the tree + the main process's file-backed RSS (summed PSS is lower "
        "while other jobs map the same libraries); beyond main = anonymous + shmem memory "
        "the main process does not map (all the workers add).\n"
    )
    print("\n".join(table(results, cases)))
    print()
    judged = [name for name in ("15k", "300k") if name in results]
    for name in judged:
        peak = max((s.alone for s in results[name].samples), default=0) / GIB
        verdict = "PASS" if peak < GOAL_GIB else "MISS"
        print(
            f"goal: {name} peak total {peak:.2f} GiB vs {GOAL_GIB:.0f} GiB: {verdict}"
            + (" (tiny sizes)" if tiny else "")
        )
    if not judged:
        print("goal: neither the 15k nor the 300k case was run")
    print(
        "worker growth: per epoch (train + val loops, from the marker callback), the peak "
        "summed USS of the DataLoader workers; a round grows if its last epoch exceeds its "
        f"second by > max({GROWTH_MIB:.0f} MiB, {GROWTH_FRACTION:.0%}) (epoch 1 forks the "
        "workers: its step to epoch 2 is reported, not judged)"
    )
    for name, r in results.items():
        growth, step, grows = worker_growth(r)
        by_round = sorted(epochs_by_round(r).items())

        def per_epoch(attr: str, rounds: list[tuple[int, list[Segment]]] = by_round) -> str:
            return "; ".join(
                f"r{k}: " + " ".join(fmt_mib(getattr(seg, attr)) for seg in epochs)
                for k, epochs in rounds
            )

        if growth is None:
            verdict = "n/a (no round with 3+ sampled epochs)"
        else:
            verdict = f"{'GROWS' if grows else 'no growth'} (max {growth:+.0f} MiB)"
        if step is not None:
            verdict += f", epoch 1 -> 2 step max {step:+.0f} MiB"
        print(f"worker growth ({name}): {verdict}")
        print(f"  workers' summed USS per epoch, MiB: {per_epoch('workers_uss_peak') or '-'}")
        print(f"  largest worker USS per epoch, MiB:  {per_epoch('worker_uss_peak') or '-'}")
        print(f"  beyond main per epoch, MiB:         {per_epoch('beyond_main_peak') or '-'}")
        print(f"  main RSS per epoch, MiB:            {per_epoch('main_rss_peak') or '-'}")
        print(f"  total as if alone per epoch, MiB:   {per_epoch('alone_peak') or '-'}")
        others = [s for s in segments(r) if not re.fullmatch(r"r\d+ e\d+", s.name) and s.samples]
        if others:
            print(
                "  total / beyond main, other stages:  "
                + "; ".join(
                    f"{s.name} {fmt_mib(s.alone_peak)} / {fmt_mib(s.beyond_main_peak)} MiB"
                    for s in others
                )
            )


def main(argv: list[str]) -> None:
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    else:
        extra = []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="demo,15k", help="comma-separated: demo,15k,300k")
    parser.add_argument("--tiny", action="store_true", help="a few hundred images (smoke test)")
    args = parser.parse_args(argv)
    all_cases = make_cases(args.tiny)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in all_cases]
    if unknown or not names:
        parser.error(f"--cases: choose from {', '.join(all_cases)}; got {args.cases!r}")
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="fer-bench-memory-") as tmp:
        data_dir = Path(tmp) / "data" if args.tiny else REPO / "data"
        # tiny: one torch thread. With two, a run is ~4x slower whenever another job
        # holds a core (OpenMP threads spin-wait for each other); the smoke test only
        # checks that figures are printed, not what they are.
        env = dict(os.environ, OMP_NUM_THREADS="1") if args.tiny else None
        for name in names:
            results[name] = measure(all_cases[name], Path(tmp), data_dir, extra, env)
    report(results, all_cases, args.tiny)


if __name__ == "__main__":
    main(sys.argv[1:])
