"""Shared bits of the console entry points: the config directory, resolvers, user errors."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import sys
from collections.abc import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from fer_lightning.console import quiet_third_party
from fer_lightning.errors import UserError
from fer_lightning.experiment import register_resolvers as register_experiment_resolvers
from fer_lightning.hardware import register_resolvers

# conf/ at the repository's top level, installed as the package fer_lightning.conf: the same
# files in an editable install and in a wheel. Users' own config dirs add to it through
# Hydra's --config-dir (hydra.searchpath).
CONFIG_DIR = str(importlib.resources.files("fer_lightning.conf"))

register_resolvers()  # every config composed through CONFIG_DIR may use them
register_experiment_resolvers()
quiet_third_party()


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
