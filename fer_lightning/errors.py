"""Errors a user can fix: each message names the file (and line) or the config key, and the fix.

The console entry points print them without a traceback and exit with status 2
(``HYDRA_FULL_ERROR=1`` still shows the traceback); anything else is a bug and keeps it.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: data, configuration, checkpoint or run directory."""


class DataError(UserError):
    """Bad input data: the message names the file (and line) and the fix."""


class ConfigError(UserError):
    """A config value that cannot work: the message names the key (``data.image_size=-5``)."""


class CheckpointError(UserError):
    """The file is not a usable FERClassifier checkpoint."""


class RunDirError(UserError):
    """The run directory belongs to another experiment, or another process is using it."""
