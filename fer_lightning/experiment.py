"""What an experiment is: its settings, apart from where its files go and how fast it runs.

Every key of the composed config defines the experiment unless it is declared here, so a
new group or key (``objective:``, ``data.mixup``) is part of every comparison without an
edit: leaving one out can only cost a cache miss, never a silent reuse. Three consumers:
- a run directory's record (:mod:`fer_lightning.run_dir`) compares the experiment settings,
  so a directory never holds two experiments, while ``resume=`` may move a run to
  another machine (all but :data:`RUNTIME_KEYS`);
- sweep job directories are named by the overrides that are not runtime keys
  (:func:`job_dirname`), so jobs of different experiments never share one;
- the teacher cache keys a teacher by every setting that can change round 0's numbers
  (:func:`teacher_settings`: all but :data:`BOOKKEEPING_KEYS` and :data:`AFTER_TEACHER`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

# no effect on any number a run computes: where files go, logging, loader processes
BOOKKEEPING_KEYS = (
    "paths",
    "hydra",
    "logger",  # where and how the curves are logged
    "teacher_cache",
    "hparams_search",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "data.splits_dir",
    "data.source.workers",  # processes generating the synthetic set: same bytes for any number
    "data.source.cache_dir",  # where a source decodes its files once (FER2013's PNGs)
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.plugins",
)
# the machine a run uses: the same experiment on a GPU or CPU (numbers may differ a little)
MACHINE_KEYS = (
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.precision",
    "trainer.benchmark",
    "model.channels_last",
    "model.compile",
)
RUNTIME_KEYS = BOOKKEEPING_KEYS + MACHINE_KEYS
# read only after round 0 (the students' rounds; a study's role, whose settings a teacher
# needs are copied into data/pseudo_label): one teacher serves every value of these
AFTER_TEACHER = ("pseudo_label", "study")
# group choices that only pick machine settings (trainer=gpu sets the keys above)
MACHINE_GROUPS = ("trainer",)


# a cross-dataset test set, eval_sets.<name>, is a data preset: its keys count as data.<key>
EVAL_SETS = "eval_sets"


def under(key: str, prefixes: Iterable[str]) -> bool:
    head, _, rest = key.partition(".")
    if head == EVAL_SETS and "." in rest:  # eval_sets.fer2013.splits_dir: as data.splits_dir
        key = "data." + rest.split(".", 1)[1]
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def is_runtime(key: str) -> bool:
    """Whether ``key`` (``a.b.c``, or a group name) says where or how fast, not what."""
    return key in MACHINE_GROUPS or under(key, RUNTIME_KEYS)


def flatten(node: Mapping | DictConfig, prefix: str = "") -> dict[str, Any]:
    """Leaves as ``a.b.c`` keys, resolved; lists stay lists (of plain values)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, ListConfig) else value
    return flat


def settings(cfg: DictConfig, ignore: Sequence[str] = RUNTIME_KEYS) -> dict[str, Any]:
    """The flattened, resolved config less the keys under ``ignore``; roots made absolute."""
    flat = {k: v for k, v in flatten(cfg).items() if not under(k, ignore)}
    for key in ("data.root", "data.unlabeled_dir", "ckpt_path"):
        if isinstance(flat.get(key), str):
            flat[key] = os.path.abspath(os.path.expanduser(flat[key]))
    return flat


def teacher_settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings that can change round 0: what the teacher cache keys a teacher by."""
    return {
        key: value
        for key, value in settings(cfg, ignore=BOOKKEEPING_KEYS).items()
        if not under(key, AFTER_TEACHER)
    }


# the seed, what copies it and the cross-validation fold: runs that differ only here are one
# configuration's repeats (a study over folds is reported like one over seeds)
SEED_KEYS = ("seed", "data.seed", "data.split_seed", "data.fold")


def group_key(values: Mapping[str, Any]) -> str:
    """The configuration of a run less its seed and fold, hashed: the report groups by it."""
    return digest({k: v for k, v in values.items() if k not in SEED_KEYS})


def digest(values: Any, length: int = 16) -> str:
    """A short, stable hash of JSON-able ``values``."""
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every key whose value differs (missing keys as ``<unset>``)."""
    unset = "<unset>"
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {old.get(k, unset)!r} -> {new.get(k, unset)!r}"
        for k in keys
        if old.get(k, unset) != new.get(k, unset)
    ]


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _short(value: str) -> str:
    """A path-like value as ``basename-hash``: readable, no nested directories, and distinct."""
    if "/" not in value:
        return value
    base = os.path.basename(value.rstrip("/")) or "root"
    return f"{base}-{digest(value, 6)}"


MAX_JOB_NAME = 200  # characters of a job directory's name; longer ones end in a hash


def job_dirname(
    overrides: Sequence[str], exclude_keys: Sequence[str] = (), limit: int | None = MAX_JOB_NAME
) -> str:
    """A sweep job's directory name: its overrides as ``key=value`` joined by commas.

    Runtime keys (where files go, the machine) are left out, path values are shortened
    to ``basename-hash``, and keys in ``exclude_keys`` (Hydra's
    ``override_dirname.exclude_keys``) are left out of the readable part but still
    hashed into a last ``excluded=<hash>`` item: jobs that differ only in an excluded
    key get different directories, and the record of each directory
    (:mod:`fer_lightning.run_dir`) refuses another experiment in any case. A name longer
    than ``limit`` (:data:`MAX_JOB_NAME`) is cut and ends in a hash of the whole name;
    ``limit=None`` keeps it whole (``fer-report``'s labels).
    """
    named, hidden = [], []
    for override in overrides:
        key, value = _split(str(override))
        if is_runtime(key):
            continue
        (hidden if key in exclude_keys else named).append(f"{key}={_short(value)}")
    if hidden:
        named.append(f"excluded={digest(sorted(hidden), 6)}")
    name = ",".join(sorted(named)) or "defaults"
    if limit is not None and len(name) > limit:  # file systems refuse names over 255 bytes
        name = f"{name[: limit - 13]},...={digest(name, 8)}"
    return name


def register_resolvers() -> None:
    """``${fer.job_dirname:${hydra.overrides.task},${...exclude_keys}}`` for hydra.sweep.subdir."""
    OmegaConf.register_new_resolver(
        "fer.job_dirname",
        lambda overrides, exclude=(): job_dirname(list(overrides), list(exclude or ())),
        replace=True,
    )
