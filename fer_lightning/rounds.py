"""Teacher–student rounds: round 0 fits the teacher, round k fits a student on labeled ∪ pseudo(k).

Everything a later round needs is on disk in the run directory (splits, each round's
best checkpoint and DONE marker, the pseudo-label manifests), and every round starts
from state derived from that and the seed alone, so a run killed anywhere resumes to
the same results.
"""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter

from fer_lightning.callbacks.pseudo_label import PseudoLabelCallback
from fer_lightning.config import PseudoLabelConfig, build
from fer_lightning.data.datamodule import FERDataModule, RoundData
from fer_lightning.data.dataset import model_seed
from fer_lightning.data.splits import budget_size
from fer_lightning.eval_sets import read_eval_sets
from fer_lightning.experiment import group_key, settings
from fer_lightning.io import write_csv
from fer_lightning.models.checkpoints import load_classifier, load_weights
from fer_lightning.pseudo.pseudo_set import check_audit, read_pseudo_manifest
from fer_lightning.pseudo.step import PseudoLabelStep
from fer_lightning.run_dir import TENSORBOARD_ROUNDS, RunDir
from fer_lightning.teacher_cache import TeacherCache, teacher_key
from fer_lightning.training import fit_round, log_hparams_session, uses_tensorboard

log = logging.getLogger(__name__)


def _distributed(cfg: DictConfig) -> bool:
    devices = cfg.trainer.get("devices", 1)
    return "ddp" in str(cfg.trainer.get("strategy", "")) or (
        isinstance(devices, int) and (devices > 1 or devices == -1)
    )


class Rounds:
    """The rounds of one run directory; every step first checks what is already on disk."""

    def __init__(
        self, cfg: DictConfig, datamodule: FERDataModule, run: RunDir, pseudo: PseudoLabelConfig
    ) -> None:
        self.cfg = cfg
        self.dm = datamodule
        self.run = run
        self.pseudo = pseudo
        self.step = PseudoLabelStep(pseudo, run) if pseudo.rounds > 0 else None
        if pseudo.rounds > 0 and pseudo.include_test:
            log.warning(
                "pseudo_label.include_test=true: the teacher labels the TEST images too "
                "(transductive); test metrics are then not comparable with inductive runs"
            )

    def run_all(self) -> list[dict]:
        """Fit the teacher and ``pseudo_label.rounds`` students; returns the table rows."""
        # the split first: the key covers its files (a picture rewritten in place changes it)
        self._prepare_data()
        key, teacher_values = teacher_key(self.cfg, self.dm.splits)
        self._ceiling_steps()
        record = (key, teacher_values)  # written into round_0/teacher.json when it trains
        if self.cfg.get("teacher_cache") and not _distributed(self.cfg):
            cache = TeacherCache(self.cfg.paths.teacher_cache_dir, key)
            log.info("teacher cache key %s (%s)", key, cache.entry)
            with cache.claim():
                restored = cache.ready and not self.run.is_done(0) and cache.restore(self.run)
                if restored and uses_tensorboard(self.cfg):
                    log_hparams_session(self.cfg, self.run, 0, self.run.read_metrics(0), 0)
                self._round(0, record)
                if not cache.ready:
                    cache.store(self.run)
        else:
            self._round(0, record)
        for k in range(1, self.pseudo.rounds + 1):
            self._round(k)
        return self._finish()

    def _prepare_data(self) -> None:
        self.dm.prepare_data()
        self.dm.setup("fit")
        # read now, so a wrong path or split stops the run before the teacher trains
        self.eval_sets = read_eval_sets(self.cfg.get("eval_sets") or {})

    def _ceiling_steps(self) -> None:
        """A study's ceiling trains as many epochs as its baseline, not as many steps.

        Equal steps is the fair rule between the baseline and the students, which share the
        labels; the ceiling has every label, so at equal steps it sees each face a fraction of
        the times and can fall below the baseline ("gap closed" is then undefined). Its steps
        grow by all labels / the study's budget (``study_budget``, kept by the role).
        """
        budget, steps = self.cfg.get("study_budget"), int(self.cfg.trainer.get("max_steps", -1))
        if self.cfg.get("study") != "ceiling" or budget is None or steps <= 0:
            return
        counts = self.dm.splits.labeled.class_counts()
        labeled = budget_size(counts, budget.get("labels_per_class"), budget.get("label_fraction"))
        if labeled >= counts.sum():
            return
        scaled = math.ceil(steps * counts.sum() / labeled)
        log.info(
            "study ceiling: %d optimizer steps, the baseline's %d x %d labels / %d (its budget): "
            "the same epochs as the baseline",
            scaled,
            steps,
            counts.sum(),
            labeled,
        )
        with open_dict(self.cfg):
            self.cfg.trainer.max_steps = scaled

    def _model(self, k: int) -> pl.LightningModule:
        """Round k's fresh model, its random parts seeded by (seed, round) alone."""
        pl.seed_everything(model_seed(int(self.cfg.seed), k), workers=True, verbose=False)
        if k == 0:
            return build(self.cfg.model)
        overrides = {}
        if self.pseudo.student_drop_rate is not None:
            overrides["drop_rate"] = self.pseudo.student_drop_rate
        model = build(self.cfg.model, **overrides)
        if self.pseudo.student_init == "teacher":
            load_weights(model, self.run.best_checkpoint(k - 1))
            log.info(
                "round %d: student starts from the teacher %s", k, self.run.best_checkpoint(k - 1)
            )
        return model

    def _round(self, k: int, teacher_record: tuple[str, dict] | None = None) -> None:
        run = self.run
        if k == 0:
            self.dm.start_round(RoundData())
        else:  # the one place a pseudo set reaches the DataModule
            pseudo = read_pseudo_manifest(run.pseudo_manifest(k))
            check_audit(pseudo, run.pseudo_manifest(k), run.pseudo_audit(k))
            student = RoundData(k, pseudo, self.pseudo.student_augment, self.pseudo.labeled_share)
            self.dm.start_round(student)
            log.info(
                "rank %d: round %d trains on %d pseudo labels from %s",
                rank_zero_only.rank,
                k,
                len(pseudo),
                run.pseudo_manifest(k),
            )
        if run.is_done(k):
            run.check_finished(k)
            log.info("round %d: finished earlier (DONE in %s); skipped", k, run.round(k))
        else:
            last = run.last_checkpoint(k)
            resume = str(last) if last.is_file() else None
            if resume and not run.best_checkpoint(k).is_file():
                # the best epoch so far is lost with its file: resuming would select among
                # the remaining epochs only; a fit from the start is the uninterrupted one
                log.warning(
                    "round %d: %s is gone, so the interrupted fit cannot keep its best epoch; "
                    "fitting round %d again from the start (same seed: the same result)",
                    k,
                    run.best_checkpoint(k),
                    k,
                )
                resume = None
            if k == 0 and resume is None and self.cfg.get("ckpt_path"):
                resume = str(self.cfg.ckpt_path)  # Lightning's meaning, for the teacher's fit
            if resume:
                log.info("round %d: resuming the interrupted fit from %s", k, resume)
            if teacher_record is not None and rank_zero_only.rank == 0:
                run.write_teacher_record(*teacher_record)
            callbacks = [PseudoLabelCallback(self.step, k)] if k < self.pseudo.rounds else []
            model = self._model(k)
            fit_round(self.cfg, self.dm, k, run, model, callbacks, resume, self.eval_sets)
        if k < self.pseudo.rounds and not run.pseudo_manifest(k + 1).is_file():
            log.info("round %d: labeling the pool with its saved teacher", k)
            best = run.best_checkpoint(k)
            self.step.produce(k, self.dm, lambda: load_classifier(best))

    def _finish(self) -> list[dict]:
        base = {
            "labeled": len(self.dm.splits.labeled),
            "seed": int(self.cfg.seed),
            "group": group_key(settings(self.cfg)),  # the configuration less the seed
            "study": self.cfg.get("study"),
        }
        rows = []
        for k in range(self.pseudo.rounds + 1):
            row = self.run.round_row(k)
            rows.append({"round": k, **base, **row})
        if rank_zero_only.rank == 0:
            logged = len(self.run.read_rounds_csv())  # rounds already in TensorBoard (resumed)
            write_csv(self.run.rounds_csv, rows)
            writer = SummaryWriter(str(self.run.tensorboard / TENSORBOARD_ROUNDS))
            for row in rows[logged:]:
                for key, value in row.items():
                    if key != "round" and isinstance(value, int | float) and not math.isnan(value):
                        writer.add_scalar(f"rounds/{key}", value, row["round"])
            writer.close()
        return rows


def run_rounds(
    cfg: DictConfig, datamodule: FERDataModule, run: RunDir, pseudo: PseudoLabelConfig
) -> list[dict]:
    """Run (or resume) every round of ``cfg`` in ``run``; returns the rounds table."""
    return Rounds(cfg, datamodule, run, pseudo).run_all()
