"""Shared bits of the console entry points: the config directory, resolvers, user errors."""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fer_lightning.console import quiet_third_party
from fer_lightning.errors import ConfigError, UserError
from fer_lightning.experiment import register_resolvers as register_experiment_resolvers
from fer_lightning.hardware import register_resolvers

# conf/ at the repository's top level, installed as the package fer_lightning.conf: the same
# files in an editable install and in a wheel. Users' own config dirs add to it through
# Hydra's --config-dir (hydra.searchpath).
CONFIG_DIR = str(importlib.resources.files("fer_lightning.conf"))

register_resolvers()  # every config composed through CONFIG_DIR may use them
register_experiment_resolvers()
quiet_third_party()


# what Hydra's override grammar reads unquoted (OverrideLexer.g4: ID and UNQUOTED_CHAR)
_HYDRA_PLAIN = re.compile(r"[A-Za-z0-9_\-/\\+.$%*@?|]*")


def _names_a_path(value: str, new_ok: bool) -> bool:
    """An existing file or folder, or (``new_ok``) a new one in an existing folder."""
    path = Path(value).expanduser()
    if path.exists():
        return True
    return new_ok and "/" in value and path.parent != Path() and path.parent.is_dir()


def literal_paths(argv: Sequence[str]) -> list[str]:
    """Quote, for Hydra, override values that name a path its grammar would misread.

    A sweep's job directories are named ``key=value,key=value``; pasted back as
    ``ckpt_path=<job>/round_0/checkpoints/best.ckpt``, Hydra reads the ``=`` and ``,`` as
    syntax. A value that names an existing path (or a new file in an existing folder) is
    one path, so it becomes ``key='value'``; a sweep's ``a,b`` names no path and stays a
    sweep (under ``-m`` only existing paths are quoted). Values already quoted,
    interpolations and quotes inside are left to Hydra.
    """
    multirun = any(a in ("-m", "--multirun") for a in argv)  # a,b there may be a sweep
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if (
            eq
            and not arg.startswith("-")
            and not _HYDRA_PLAIN.fullmatch(value)
            and not value.startswith(("'", '"'))
            and not any(c in value for c in "'\\\"")
            and "${" not in value
            and _names_a_path(value, new_ok=not multirun)
        ):
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


# Hydra's flags that take no value: argparse refuses them after the overrides
# ("unrecognized arguments") unless they come first
_BARE_FLAGS = ("-m", "--multirun", "--resolve", "-h", "--help", "--hydra-help")


def flags_first(argv: Sequence[str]) -> list[str]:
    """Hydra's value-less flags moved before the overrides: ``fer-train a=1 b=2 -m`` works."""
    return [a for a in argv if a in _BARE_FLAGS] + [a for a in argv if a not in _BARE_FLAGS]


def hydra_entry(app: Callable[[], Any]) -> Callable[[], Any]:
    """A console entry point around a ``@hydra.main`` app: paths on the command line are
    taken literally (:func:`literal_paths`), so every path the tools print pastes back."""

    @functools.wraps(app)
    def main() -> Any:
        sys.argv = [sys.argv[0], *literal_paths(flags_first(sys.argv[1:]))]
        return app()

    return main


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Print a :class:`UserError` as ``prog: error: message`` and exit 2, without a traceback.

    In a sweep the error is raised on, so the sweeper records the job as failed (Optuna
    goes on with the next trial); ``HYDRA_FULL_ERROR=1`` keeps the traceback too.
    """
    try:
        yield
    except UserError as err:
        sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if sweep or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def check_writable(folder: str | Path, key: str) -> None:
    """Make ``folder`` (and its parents) and write a probe file there, or raise a ConfigError.

    A read-only folder (permissions or a read-only file system), a file in the way or a
    full disk then fail in one line naming the setting, before Hydra or a fit trips on it.
    """
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        where = f" ({err.filename})" if err.filename and str(err.filename) != str(path) else ""
        raise ConfigError(
            f"{key}={folder}: cannot write there: {err.strerror or err}{where}; "
            f"choose a folder you can write, e.g. {key}=/tmp/fer_logs"
        ) from None


class WritableDirs(Callback):
    """Hydra callback: the run (or sweep) folder and ``paths.log_dir`` must be writable.

    Runs before Hydra makes the run folder, so that an unwritable place is one line and
    exit status 2 (:func:`user_errors`' rule), not Hydra's ``mkdir`` traceback.
    """

    def _check(self, config: DictConfig, dir_key: str) -> None:
        prog = f"fer-{Path(sys.argv[0]).stem.removeprefix('fer-')}"
        checks = [(OmegaConf.select(config, "paths.log_dir", default=None), "paths.log_dir")]
        checks.append((OmegaConf.select(config, dir_key), dir_key))
        try:
            for folder, key in checks:
                if folder is not None:
                    check_writable(str(folder), key)
        except ConfigError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"{prog}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")
