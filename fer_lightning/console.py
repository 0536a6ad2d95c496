"""A readable console: third-party messages we cannot act on are filtered, one by one.

Each filter names the exact message, so anything new or actionable still shows; our own
log lines, Lightning's progress bars and its other messages are untouched.
"""

from __future__ import annotations

import logging
import warnings

# (module of the warning, the start of its message): raised by libraries we pin, not by us
_WARNINGS = (
    # Lightning's pytree helper uses an API torch deprecated; once per fit, nothing to do
    (r"pytorch_lightning\.utilities\._pytree", r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # resume reopens a fit in its own checkpoint folder, on purpose
    ("", r"Checkpoint directory .* exists and is not empty"),
)
_RANK_ZERO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)


# Lightning's per-fit status lines, which our own log says better (the device, the
# round's checkpoints), and its adverts: shown only at DEBUG
_CHATTER = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "`Trainer.fit` stopped:",
    "Restoring states from the checkpoint",
    "Loaded model weights from the checkpoint",
)
_ADVERTS = ("litlogger", "litmodels")


class _DropAdvert(logging.Filter):
    """Lightning's adverts dropped; its status chatter demoted to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if any(word in text for word in _ADVERTS):
            return False
        if text.startswith(_CHATTER):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_third_party() -> None:
    """Install the filters (idempotent)."""
    for module, message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvert) for f in logger.filters):
            logger.addFilter(_DropAdvert())


def rate(count: int, seconds: float) -> str:
    """``count / seconds`` for people: whole numbers from 100 up, else 3 significant digits.

    So a slow CPU run prints ``0.25 img/s``, not ``0 img/s``.
    """
    value = count / max(seconds, 1e-9)
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"
