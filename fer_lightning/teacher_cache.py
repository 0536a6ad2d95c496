"""Teacher cache: round 0 does not depend on the pseudo-label settings, so train it once.

An entry is keyed by a hash of everything that shapes the teacher (data, split, model,
optimisation, trainer, seed; not ``pseudo_label`` or paths) and holds the run's split
and its ``round_0`` directory (best checkpoint, metrics, teacher probabilities). A file
lock makes concurrent jobs train a teacher once; entries are built in a temp directory
and renamed, so nobody reads a half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from fer_lightning.io import atomic_write_text

log = logging.getLogger(__name__)

TEACHER_GROUPS = ("data", "model", "trainer", "callbacks", "seed", "ckpt_path")
# settings that change speed or bookkeeping, not the teacher
NEUTRAL_KEYS = {
    "data.num_workers",
    "data.pin_memory",
    "data.splits_dir",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
}
# what an entry holds, relative to a run directory (TensorBoard events stay with the run
# that trained the teacher: a hit logs its own round-0 HPARAMS session)
ENTRY_PARTS = ("splits", "round_0")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def teacher_key(cfg: DictConfig) -> str:
    """A short hash of the resolved settings that determine round 0."""
    settings: dict[str, Any] = {}
    for group in TEACHER_GROUPS:
        value = cfg.get(group)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        settings.update(_flat(value, f"{group}.") if isinstance(value, dict) else {group: value})
    for key in NEUTRAL_KEYS:
        settings.pop(key, None)
    if settings.get("data.root"):
        settings["data.root"] = str(Path(settings["data.root"]).resolve())
    # code that trains the teacher: a new release of these must not reuse an old teacher
    settings["versions"] = {
        name: importlib.metadata.version(name)
        for name in ("fer_lightning", "torch", "timm", "pytorch-lightning", "albumentations")
    }
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links keep checkpoints from being duplicated on disk; copy across devices."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_parts(src_root: Path, dst_root: Path) -> None:
    for part in ENTRY_PARTS:
        src = src_root / part
        if src.is_dir():
            shutil.copytree(src, dst_root / part, copy_function=_link_or_copy, dirs_exist_ok=True)


class TeacherCache:
    """The cache directory of one key; :meth:`claim` guards training the teacher."""

    def __init__(self, root: str | Path, key: str) -> None:
        self.root = Path(root)
        self.key = key
        self.entry = self.root / key

    @property
    def ready(self) -> bool:
        return (self.entry / "DONE").is_file()

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the key's lock: while one job trains this teacher, the others wait."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / f"{self.key}.lock")
        try:
            lock.acquire(blocking=False)
        except Timeout:
            log.info("teacher cache %s: another job is training this teacher; waiting", self.key)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def restore(self, run_dir: Path) -> None:
        """Put the cached teacher into ``run_dir`` as if round 0 had run there."""
        _copy_parts(self.entry, run_dir)
        metrics_path = run_dir / "round_0" / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        metrics["best_checkpoint"] = str(run_dir / "round_0" / "checkpoints" / "best.ckpt")
        metrics["teacher_cache"] = self.key
        metrics_path.unlink()  # a hard link: do not write through into the cache entry
        atomic_write_text(metrics_path, json.dumps(metrics, indent=2))
        log.info("teacher cache hit %s: reusing the teacher of %s", self.key, self.entry)

    def store(self, run_dir: Path) -> None:
        """Copy a finished round 0 into the cache (temp dir, then rename)."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.key}.", dir=self.root))
        try:
            _copy_parts(run_dir, tmp)
            (tmp / "round_0" / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
            (tmp / "DONE").touch()
            os.replace(tmp, self.entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("teacher cache %s: stored the teacher of %s", self.key, run_dir)
