"""The run directory: where everything a run needs to resume lives, and who owns it.

One place for the layout (splits, round folders, checkpoints, DONE markers, metrics,
pseudo-label manifests, rounds.csv, TensorBoard folders) and for reading a finished
round, so training, resume, the teacher cache and reports agree. Torch-free:
``fer-report`` and the notebooks read runs without importing torch.

A directory belongs to one experiment: the first run records its settings
(``experiment.json``) and every later run there must have the same ones, and while a
run is alive it holds an OS lock on ``.lock`` (released by the kernel even after
``kill -9``), so a second process on the same directory fails at once.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import RunDirError
from fer_lightning.experiment import differences
from fer_lightning.io import atomic_write_text, number, write_json
from fer_lightning.results import absent_emotions, eval_set_names, prefix

log = logging.getLogger(__name__)

RECORD_FILE = "experiment.json"
LOCK_FILE = ".lock"
HYDRA_DIR = ".hydra"
DONE = "DONE"  # written last into a finished round (and a complete teacher cache entry)
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_ROUNDS = "rounds"  # tensorboard/rounds: rounds/<metric> with step = round
# what the teacher cache keeps of a run: enough to restore round 0 elsewhere
TEACHER_PARTS = ("splits", "round_0")
SHOWN_DIFFERENCES = 8
# per-class audit lists copied into rounds.csv: (column prefix, audit key)
AUDIT_COLUMNS = (("count", "count"), ("conf", "mean_confidence"), ("precision", "precision"))


@dataclass(frozen=True)
class RunDir:
    """The layout of one run directory (``root``): its paths, its record and its rounds."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- layout ----------------------------------------------------------------------
    @property
    def hydra(self) -> Path:
        return self.root / HYDRA_DIR  # config.yaml (what resume= reloads), overrides.yaml

    @property
    def record(self) -> Path:
        return self.root / RECORD_FILE

    def round(self, k: int) -> Path:
        return self.root / f"round_{k}"

    def checkpoints(self, k: int) -> Path:
        return self.round(k) / "checkpoints"

    def best_checkpoint(self, k: int) -> Path:
        return self.checkpoints(k) / "best.ckpt"

    def last_checkpoint(self, k: int) -> Path:
        return self.checkpoints(k) / "last.ckpt"

    def metrics(self, k: int) -> Path:
        return self.round(k) / "metrics.json"

    def confusion_matrix(self, k: int) -> Path:
        return self.round(k) / "confusion_matrix.json"  # rows: true emotion

    def teacher_probs(self, k: int) -> Path:
        """Round ``k``'s best model's probabilities on the pool and the validation split."""
        return self.round(k) / "teacher_probs.pt"

    def teacher_record(self) -> Path:
        """Which teacher settings round 0 was trained with (the teacher cache key)."""
        return self.round(0) / "teacher.json"

    def done_marker(self, k: int) -> Path:
        return self.round(k) / DONE

    def pseudo_manifest(self, k: int) -> Path:
        """The pseudo set the student of round ``k`` trains on (written after round k-1)."""
        return self.root / "pseudo_labels" / f"round_{k}.csv"

    def pseudo_audit(self, k: int) -> Path:
        return self.pseudo_manifest(k).with_suffix(".json")

    @property
    def rounds_csv(self) -> Path:
        return self.root / "rounds.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD_DIR  # round_<k>/ per fit, rounds/ across rounds

    @staticmethod
    def tensorboard_version(k: int) -> str:
        return f"round_{k}"

    # -- state -----------------------------------------------------------------------
    def is_done(self, k: int) -> bool:
        return self.done_marker(k).is_file()

    def check_finished(self, k: int) -> None:
        """Trust round ``k``'s DONE only with what a finished round needs: its best
        checkpoint (the next round's teacher, fer-eval's model) and its metrics."""
        missing = [p for p in (self.best_checkpoint(k), self.metrics(k)) if not p.is_file()]
        if missing:
            raise RunDirError(
                f"round {k} of {self.root} is marked finished ({self.done_marker(k)}) but "
                f"{' and '.join(str(p.relative_to(self.root)) for p in missing)} "
                f"{'is' if len(missing) == 1 else 'are'} gone; to train that round again, "
                f"delete {self.done_marker(k)} and resume (fer-train resume={self.root}), "
                "or start a new run directory"
            )

    def mark_done(self, k: int) -> None:
        self.done_marker(k).touch()

    def finish_round(self, k: int, metrics: Mapping[str, Any], confusion: list) -> None:
        """Write round ``k``'s metrics and confusion matrix, then DONE (last)."""
        write_json(self.metrics(k), dict(metrics))
        write_json(self.confusion_matrix(k), confusion)
        self.mark_done(k)

    def write_teacher_record(self, key: str, settings: Mapping[str, Any]) -> None:
        """Record round 0's teacher key when its fit starts (kept if a resume changes it)."""
        if not self.teacher_record().is_file():
            write_json(self.teacher_record(), {"key": key, "settings": _json_round_trip(settings)})

    def teacher_key(self) -> str | None:
        path = self.teacher_record()
        return json.loads(path.read_text())["key"] if path.is_file() else None

    def read_metrics(self, k: int) -> dict[str, Any]:
        return json.loads(self.metrics(k).read_text())

    def read_audit(self, k: int) -> dict[str, Any]:
        """Round ``k``'s pseudo-label audit (empty for the teacher or when absent)."""
        path = self.pseudo_audit(k)
        return json.loads(path.read_text()) if k > 0 and path.is_file() else {}

    def round_row(self, k: int) -> dict[str, Any]:
        """Round ``k``'s row of ``rounds.csv``: test metrics and its pseudo set's audit."""
        metrics = self.read_metrics(k)
        row: dict[str, Any] = {
            "round": k,
            "val_macro_f1": float(metrics["val/best_macro_f1"]),
            "test_macro_f1": float(metrics["test/macro_f1"]),
            "test_acc": float(metrics["test/acc"]),
            "steps": number(metrics.get("steps")),  # optimizer steps of the round's fit
            "seconds": number(metrics.get("cost/seconds")),  # training wall time
            "images": number(metrics.get("cost/images")),  # images through the network
            "online_mask": number(metrics.get("pool/mask_rate")),  # online methods' audit
            "online_precision": number(metrics.get("pool/precision")),
        }
        absent = absent_emotions(metrics)  # NaN: no test face of that emotion, so no F1 (not 0)
        row.update(
            {
                f"test_f1_{e}": math.nan if e in absent else float(metrics[f"test/f1_{e}"])
                for e in EMOTIONS
            }
        )
        for name in eval_set_names(metrics):  # cross-dataset test sets (fer_lightning/eval_sets)
            at = prefix(name)
            held = set(EMOTIONS) - set(str(metrics[at + "absent"]).split(","))
            row[at + "macro_f1"] = float(metrics[at + "macro_f1"])
            row[at + "acc"] = float(metrics[at + "acc"])
            row.update(
                {
                    f"{at}f1_{e}": float(metrics[f"{at}f1_{e}"]) if e in held else math.nan
                    for e in EMOTIONS
                }
            )
        audit = self.read_audit(k)
        row["pseudo_added"] = int(audit.get("added", 0))
        row["pseudo_precision"] = number(audit.get("precision_overall"))
        row["share_labeled"] = number(audit.get("largest_share_labeled"))
        row["share_after"] = number(audit.get("largest_share_after"))
        row["no_pseudo"] = " ".join(EMOTIONS[c] for c in audit.get("no_pseudo", []))
        for name, key in AUDIT_COLUMNS:
            values = audit.get(key) or [None] * NUM_CLASSES
            row.update(
                {f"pseudo_{name}_{e}": number(v) for e, v in zip(EMOTIONS, values, strict=True)}
            )
        return row

    def finished_rounds(self) -> tuple[list[int], bool]:
        """The finished rounds in order, and whether a started round is unfinished."""
        k = 0
        while self.round(k).is_dir():
            if not self.is_done(k):
                return list(range(k)), True
            k += 1
        return list(range(k)), False

    def is_locked(self) -> bool:
        """Whether a live process holds the run's lock now (a fer-train is using it).

        Probes with a shared non-blocking lock, released at once; a dead run's lock was
        released by the kernel, so this tells a running run from an interrupted one.
        """
        try:
            fd = os.open(self.root / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return True
            raise
        finally:
            os.close(fd)
        return False

    def read_rounds_csv(self) -> list[dict[str, str]]:
        """The rows of ``rounds.csv``; none when it is absent or unreadable (not text, not
        CSV): it is only a summary, rewritten from the rounds' own files after each run."""
        if not self.rounds_csv.is_file():
            return []
        try:
            with open(self.rounds_csv, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            log.warning(
                "%s is unreadable (%s): it is rewritten from the rounds' metrics",
                self.rounds_csv,
                err.__class__.__name__,
            )
            return []

    # -- ownership -------------------------------------------------------------------
    @contextlib.contextmanager
    def claim(
        self,
        settings: Mapping[str, Any],
        hydra_files: Mapping[str, str] | None = None,
        resumed: bool = False,
        splits_dir: Path | None = None,
    ) -> Iterator[None]:
        """Own the directory for one run: the lock, then the experiment record.

        ``settings`` define the experiment (see :func:`fer_lightning.experiment.settings`);
        a directory recorded with other settings is refused before anything is written,
        naming the keys that differ. ``hydra_files`` (``.hydra/<name>`` -> text) are
        written once the directory is ours, so they always describe its experiment.
        ``splits_dir`` (the DataModule's) is where a never-trained run's split lies.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with self.lock():
            if not resumed:
                self._forget_untrained(settings, splits_dir)
            self.check_record(settings, resumed)
            if not self.record.is_file():
                write_json(self.record, {"settings": _json_round_trip(settings)})
            for name, text in (hydra_files or {}).items():
                atomic_write_text(self.hydra / name, text)
            yield

    def _forget_untrained(self, settings: Mapping[str, Any], splits_dir: Path | None) -> None:
        """A run stopped before training (a data error, say) computed nothing: rerunning with
        the fix the message suggests may redo it, so its record and its own split (one
        inside the directory; a split kept elsewhere may serve other runs) are dropped."""
        if not self.record.is_file() or self.round(0).exists():
            return
        recorded = json.loads(self.record.read_text())["settings"]
        if not differences(recorded, dict(_json_round_trip(settings))):
            return
        log.warning(
            "%s was never trained (no round_0): its record and splits are replaced by this run's",
            self.root,
        )
        self.record.unlink()
        if splits_dir is not None and Path(splits_dir).resolve().is_relative_to(
            self.root.resolve()
        ):
            shutil.rmtree(splits_dir, ignore_errors=True)

    def check_record(self, settings: Mapping[str, Any], resumed: bool = False) -> None:
        """Refuse a directory whose recorded experiment differs from ``settings``
        (``resumed``: they came from ``resume=`` with overrides that change it)."""
        if not self.record.is_file():
            if self.round(0).is_dir():
                raise RunDirError(
                    f"{self.root} holds results but no {RECORD_FILE} (made by an older "
                    "fer_lightning), so what it computed cannot be checked; use a new run "
                    "directory (hydra.run.dir=...)"
                )
            return
        recorded = json.loads(self.record.read_text())["settings"]
        changed = differences(recorded, dict(_json_round_trip(settings)))
        if changed:
            shown = "\n  ".join(changed[:SHOWN_DIFFERENCES])
            more = len(changed) - SHOWN_DIFFERENCES
            shown += f"\n  ... ({more} more)" if more > 0 else ""
            if resumed:
                raise RunDirError(
                    f"resume={self.root}: these settings define the experiment, so they "
                    f"cannot change on resume (only where and how fast it runs may):\n  {shown}\n"
                    "Resume without them, or run them as a new experiment in a new directory "
                    "(hydra.run.dir=...)."
                )
            raise RunDirError(
                f"run directory {self.root} belongs to another experiment; its record "
                f"({RECORD_FILE}) differs in:\n  {shown}\n"
                f"To continue that experiment: fer-train resume={self.root}. To run this one: "
                "give it a new directory (hydra.run.dir=... or hydra.sweep.dir=...)."
            )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive OS lock on ``.lock`` for the run's lifetime; fails at once if held."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise RunDirError(
                    f"run directory {self.root} is in use by process {holder} (another "
                    "fer-train on the same directory); wait for it to finish, or give this "
                    "run its own directory"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _json_round_trip(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as they read back from the record (tuples become lists, NaN null)."""
    plain = {k: (None if _nan(v) else v) for k, v in values.items()}
    return json.loads(json.dumps(plain, default=str))


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
