"""Online semi-supervised methods: FixMatch and FlexMatch as FERClassifier subclasses.

Each training step takes a labeled batch and ``mu`` times as many pool faces, each as a
weak and a strong view (:meth:`FERDataModule.train_dataloader`). The pseudo-target is the
weak view's prediction, without gradient; the strong view is trained towards it where the
prediction clears a confidence threshold (Sohn et al. 2020). FlexMatch (Zhang et al. 2021)
lowers the threshold of classes the model has not learned yet. Validation, checkpoints and
the pseudo-label pass between rounds use the weights' EMA
(:class:`~fer_lightning.callbacks.ema.EMA`), as FixMatch evaluates. A checkpoint is an
ordinary FERClassifier checkpoint to ``fer-eval``, ``fer-predict`` and ``fer-export``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from fer_lightning.callbacks.ema import EMA
from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import ConfigError
from fer_lightning.models.classifier import FERClassifier
from fer_lightning.models.losses import soft_cross_entropy
from fer_lightning.pseudo.selection import debiased
from fer_lightning.pseudo.strategies import class_thresholds, correct_and_known, number_in

STATUS_KEY = "flexmatch_status"  # the checkpoint entry holding FlexMatch's per-face state
AUDIT_KEY = "pool_audit"  # the checkpoint entry holding the last epoch's audit


class FixMatch(FERClassifier):
    """FixMatch: confident weak-view predictions as targets for strong views of pool faces.

    ``mu`` pool faces per labeled face, threshold ``tau``, unlabeled loss weight
    ``lambda_u``; ``debias`` divides the weak-view probabilities by the labeled class
    prior to that power before the threshold (logit adjustment, the offline selection's
    ``debias``: distribution alignment towards balanced classes); ``ema_decay`` 0 turns the
    EMA off. The other arguments are :class:`FERClassifier`'s.
    """

    def __init__(
        self,
        *args: Any,
        mu: int = 7,
        tau: float = 0.95,
        lambda_u: float = 1.0,
        debias: float = 0.0,
        ema_decay: float = 0.999,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.unlabeled_ratio = mu  # read by FERDataModule: pool faces per labeled face
        self.tau = float(tau)
        self.lambda_u = float(lambda_u)
        self.debias = float(debias)
        self.ema_decay = float(ema_decay)
        self.labeled_counts = torch.ones(NUM_CLASSES)
        self.hidden_labels: Tensor | None = None  # the pool's, for the audit only
        # per predicted class: seen, passed, passed with a known truth, of those right
        self._audit = torch.zeros(4, NUM_CLASSES)
        self.pool_audit: dict[str, float] = {}  # the last epoch's, read into metrics.json

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        mu = options.get("mu", 7)
        if not isinstance(mu, int) or isinstance(mu, bool) or mu < 1:
            raise ConfigError(f"model.mu must be an integer >= 1, got {mu!r}")
        for name, high in (("tau", 1.0), ("lambda_u", 100.0), ("debias", 2.0)):
            value = options.get(name, 0.0)
            if not number_in(value, 0.0, high):
                raise ConfigError(f"model.{name} must be a number in [0, {high}], got {value!r}")
        decay = options.get("ema_decay", 0.0)
        if not number_in(decay, 0.0, 1.0) or decay == 1.0:
            raise ConfigError(f"model.ema_decay must be in [0, 1), got {decay!r}")

    def configure_callbacks(self) -> list[pl.Callback]:
        return [EMA(self.ema_decay)] if self.ema_decay > 0 else []

    def setup(self, stage: str) -> None:
        """The labeled class prior (for ``debias``) and the pool's hidden labels (audit)."""
        dm = getattr(self.trainer, "datamodule", None)
        if stage != "fit" or dm is None:
            return
        labels = torch.as_tensor(dm.splits.labeled.labels, dtype=torch.long)
        self.labeled_counts = torch.bincount(labels, minlength=NUM_CLASSES).float()
        self.hidden_labels = torch.as_tensor(dm.pool().labels, dtype=torch.long)

    # -- the step --------------------------------------------------------------------
    def thresholds(self, pseudo: Tensor, confident: Tensor, index: Tensor) -> Tensor:
        """The confidence each pool face must reach, [N]: ``tau`` for every class here."""
        return torch.full_like(pseudo, self.tau, dtype=torch.float32)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        x, targets, weights = batch["labeled"]
        weak, strong, index = batch["pool"]
        supervised = soft_cross_entropy(
            self(x), targets, weights, self.label_smoothing, self.class_weights
        )
        if self.lambda_u == 0:
            self.log("train/loss", supervised, on_epoch=True, prog_bar=True, batch_size=len(x))
            return supervised
        logits = self(torch.cat([weak, strong]))
        logits_weak, logits_strong = logits.chunk(2)
        with torch.no_grad():
            probs = logits_weak.detach().float().softmax(dim=1)
            if self.debias > 0:
                probs = debiased(probs, self.labeled_counts, self.debias)
            confidence, pseudo = probs.max(dim=1)
            passed = confidence >= self.thresholds(pseudo, confidence, index).to(confidence)
        unsupervised = (
            F.cross_entropy(logits_strong.float(), pseudo, reduction="none") * passed
        ).mean()
        loss = supervised + self.lambda_u * unsupervised
        self._count(pseudo, passed, index)
        self.log("train/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(x))
        self.log("train/loss_unlabeled", unsupervised, on_epoch=True, batch_size=len(weak))
        return loss

    # -- the audit: per emotion, how many pool faces pass and how many of those are right --
    def _count(self, pseudo: Tensor, passed: Tensor, index: Tensor) -> None:
        pseudo, passed = pseudo.cpu(), passed.cpu()
        seen = torch.bincount(pseudo, minlength=NUM_CLASSES)
        kept = torch.bincount(pseudo[passed], minlength=NUM_CLASSES)
        right = known = torch.zeros(NUM_CLASSES, dtype=torch.long)
        if self.hidden_labels is not None:  # the offline audit's rule: over known truths only
            truth = self.hidden_labels[index.cpu()]
            right, known = correct_and_known(pseudo[passed], truth[passed], NUM_CLASSES)
        self._audit += torch.stack([seen, kept, known, right]).float()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._audit.zero_()

    def on_train_epoch_end(self) -> None:
        """``pool/mask_<emotion>``: the share of faces predicted as it that passed;
        ``pool/precision_<emotion>``: the share of those whose hidden label agrees."""
        counts = self._audit.to(self.device)
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).sum(dim=0)
        seen, kept, known, right = counts
        truth = self.hidden_labels is not None and bool((self.hidden_labels >= 0).any())
        share = lambda part, whole: float(part / whole) if whole > 0 else math.nan  # noqa: E731
        audit = {"pool/mask_rate": share(kept.sum(), seen.sum())}
        if truth:
            audit["pool/precision"] = share(right.sum(), known.sum())
        for c, emotion in enumerate(EMOTIONS):  # NaN: no face predicted (or kept) as it
            audit[f"pool/mask_{emotion}"] = share(kept[c], seen[c])
            if truth:
                audit[f"pool/precision_{emotion}"] = share(right[c], known[c])
        self.pool_audit = audit
        for key, value in audit.items():
            self.log(key, value)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[AUDIT_KEY] = dict(self.pool_audit)  # a resume with no epoch left reports it

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.pool_audit = dict(checkpoint.get(AUDIT_KEY, {}))


class FlexMatch(FixMatch):
    """FlexMatch: per-class thresholds from each class's learning status.

    Each pool face keeps its last prediction that cleared ``tau``; a class's status is how
    many faces hold it, ``beta_c = sigma_c / max(max_c sigma, unused)`` with the warm-up
    (faces never confident count as a class of their own) or ``/ max_c sigma`` without, and
    the threshold is ``tau * M(beta_c)`` with the convex ``M(b) = b / (2 - b)``:
    :func:`~fer_lightning.pseudo.strategies.class_thresholds`, as ``class_threshold``'s.
    """

    def __init__(self, *args: Any, warmup: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warmup = warmup
        self.status: Tensor | None = None  # per pool face: its last confident class, or -1

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        if not isinstance(options.get("warmup", True), bool):
            raise ConfigError(f"model.warmup={options['warmup']!r}: must be true or false")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and dm is not None and self.status is None:
            self.status = torch.full((len(dm.pool()),), -1, dtype=torch.long)

    def class_scores(self) -> Tensor:
        """How many faces hold each class as status, then (warm-up) the never-confident ones:
        ``beta_c`` is each class's count over the largest of these."""
        assert self.status is not None
        sigma = torch.bincount(self.status[self.status >= 0], minlength=NUM_CLASSES).double()
        unused = (self.status < 0).sum().double().reshape(1)
        return torch.cat([sigma, unused]) if self.warmup else sigma

    def thresholds(self, pseudo: Tensor, confidence: Tensor, index: Tensor) -> Tensor:
        assert self.status is not None
        scores = self.class_scores()
        tau = class_thresholds(self.tau, scores, floor=0.0, mapping="convex")[:NUM_CLASSES]
        needed = tau.to(confidence.device)[pseudo]
        over = confidence >= self.tau
        if self._trainer is not None and self.trainer.world_size > 1:  # every face, every rank
            index, pseudo, over = (self.all_gather(t).flatten() for t in (index, pseudo, over))
        over = over.cpu()
        self.status[index.cpu()[over]] = pseudo.cpu()[over]  # the statuses for the next step
        return needed

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.status is not None:  # beside the weights: the EMA averages every buffer
            checkpoint[STATUS_KEY] = self.status.clone()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if STATUS_KEY in checkpoint:
            self.status = checkpoint[STATUS_KEY].clone()
