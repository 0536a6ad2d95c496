"""Shared bits of the console entry points: the config directory, resolvers, user errors."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from fer_lightning.errors import UserError
from fer_lightning.experiment import register_resolvers as register_experiment_resolvers
from fer_lightning.hardware import register_resolvers

# conf/ sits at the repository top level (the package is installed editable from the repo).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

register_resolvers()  # every config composed through CONFIG_DIR may use them
register_experiment_resolvers()


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
