"""Teacher cache: round 0 does not depend on the pseudo-label settings, so train it once.

An entry is keyed by a hash of everything that can change the teacher's numbers (every
setting but those :func:`fer_lightning.experiment.teacher_settings` declares bookkeeping or
read after round 0, plus code versions) and of the images themselves: every file of the
four splits by path, label (and target distribution, where a split has one), size and
modification time in nanoseconds (:func:`split_fingerprint`; a ``stat`` per file, no
reading), so pictures overwritten under the same names give a new key. It holds the run's
split and its ``round_0`` directory (best checkpoint, metrics, teacher probabilities, and
``teacher.json``: the key it was trained under). An entry only ever holds what its key
describes: a run's round 0 is stored only if it was trained under that key, and an entry
is restored only if its record says the key. A file lock makes concurrent jobs train a
teacher once; entries are built in a temp directory and renamed, so nobody reads a
half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig

from fer_lightning.data.splits import SPLIT_NAMES, Splits
from fer_lightning.experiment import digest, teacher_settings
from fer_lightning.io import atomic_dir, write_json
from fer_lightning.run_dir import DONE, TEACHER_PARTS, RunDir

log = logging.getLogger(__name__)

CODE = ("fer_lightning", "torch", "timm", "pytorch-lightning", "albumentations")


def split_fingerprint(splits: Splits) -> dict[str, Any]:
    """The images the teacher sees, cheaply: per split, each file's path, label, size and
    mtime (ns), and the split's target distributions if it has any, hashed. Rewriting a
    file changes its size or mtime, so its key changes; a missing file hashes as such (the
    data loader then reports it)."""
    fingerprint: dict[str, Any] = {}
    for name in SPLIT_NAMES:
        manifest = getattr(splits, name)
        h = hashlib.blake2b(digest_size=16)
        for path, label in zip(manifest.paths.tolist(), manifest.labels.tolist(), strict=True):
            try:
                stat = os.stat(path)
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
            h.update(f"{path}\0{label}\0{size}\0{mtime}\n".encode())
        if manifest.targets is not None:  # soft targets (FERPlus votes) train the teacher too
            h.update(manifest.targets.tobytes())
        fingerprint[name] = f"{len(manifest)} files, {h.hexdigest()}"
    return fingerprint


def teacher_key(cfg: DictConfig, splits: Splits | None = None) -> tuple[str, dict[str, Any]]:
    """(short hash, settings) of the resolved settings that determine round 0, and of the
    split's files (:func:`split_fingerprint`) when ``splits`` is given."""
    values = teacher_settings(cfg)
    if splits is not None:
        values["files"] = split_fingerprint(splits)
    # code that trains the teacher: a new release of these must not reuse an old teacher
    values["versions"] = {name: importlib.metadata.version(name) for name in CODE}
    return digest(values), values


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links keep checkpoints from being duplicated on disk; copy across devices."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_parts(src_root: Path, dst_root: Path) -> None:
    for part in TEACHER_PARTS:
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
        return (self.entry / DONE).is_file()

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

    def restore(self, run: RunDir) -> bool:
        """Put the cached teacher into ``run`` as if round 0 had run there; False if unusable."""
        held = RunDir(self.entry).teacher_key()
        if held != self.key:
            log.warning(
                "teacher cache %s holds a teacher trained under key %s; not used (delete %s)",
                self.key,
                held,
                self.entry,
            )
            return False
        _copy_parts(self.entry, run.root)
        metrics = run.read_metrics(0)
        metrics["best_checkpoint"] = str(run.best_checkpoint(0))
        metrics["teacher_cache"] = self.key
        run.metrics(0).unlink()  # a hard link: do not write through into the cache entry
        write_json(run.metrics(0), metrics)
        log.info("teacher cache hit %s: reusing the teacher of %s", self.key, self.entry)
        return True

    def store(self, run: RunDir) -> None:
        """Copy a finished round 0 into the cache, if it was trained under this key."""
        trained = run.teacher_key()
        if trained != self.key:
            log.warning(
                "teacher cache %s: round 0 of %s was trained under key %s; not stored",
                self.key,
                run.root,
                trained,
            )
            return
        with atomic_dir(self.entry) as tmp:
            _copy_parts(run.root, tmp)
            RunDir(tmp).last_checkpoint(0).unlink(missing_ok=True)
            (tmp / DONE).touch()
        log.info("teacher cache %s: stored the teacher of %s", self.key, run.root)
