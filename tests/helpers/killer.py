"""fer-train that SIGKILLs itself at one boundary of a run (tests only), as a crash would.

    python tests/helpers/killer.py BOUNDARY [fer-train overrides...]

BOUNDARY is one of :data:`BOUNDARIES`; the kill is ``kill -9``: no cleanup, no flush.
"""

from __future__ import annotations

import os
import signal
import sys

from fer_lightning import rounds
from fer_lightning.pseudo.step import PseudoLabelStep
from fer_lightning.training import SeedEachEpoch

BOUNDARIES = ("teacher_fit", "after_manifest", "after_done", "student_fit")
KILL_EPOCH = 1  # inside a fit: when this epoch starts (epoch 0 is checkpointed)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(boundary: str) -> None:
    if boundary in ("teacher_fit", "student_fit"):
        round_index = 0 if boundary == "teacher_fit" else 1
        epoch_start = SeedEachEpoch.on_train_epoch_start

        def on_train_epoch_start(self, trainer, module):
            if self.round_index == round_index and trainer.current_epoch == KILL_EPOCH:
                trainer.strategy.checkpoint_io.teardown()  # let the last background save land
                die()
            epoch_start(self, trainer, module)

        SeedEachEpoch.on_train_epoch_start = on_train_epoch_start
    elif boundary == "after_manifest":
        write = PseudoLabelStep._write

        def _write(self, next_round, datamodule, probs):
            write(self, next_round, datamodule, probs)
            if next_round == 1:
                die()

        PseudoLabelStep._write = _write
    elif boundary == "after_done":
        fit_round = rounds.fit_round

        def fit_then_die(cfg, datamodule, k, *args, **kwargs):
            metrics = fit_round(cfg, datamodule, k, *args, **kwargs)
            if k == 0:
                die()
            return metrics

        rounds.fit_round = fit_then_die
    else:
        raise SystemExit(f"unknown boundary {boundary!r}; one of {', '.join(BOUNDARIES)}")


if __name__ == "__main__":
    arm(sys.argv.pop(1))
    from fer_lightning.cli.train import main

    main()
