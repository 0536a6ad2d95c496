"""FERClassifier: a timm backbone fine-tuned for the 7 basic emotions."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from fer_lightning.emotions import EMOTIONS, NUM_CLASSES
from fer_lightning.errors import ConfigError
from fer_lightning.models.backbones import backbone_mean_std, check_backbone, create_backbone
from fer_lightning.models.losses import soft_cross_entropy
from fer_lightning.plots import confusion_matrix_figure
from fer_lightning.pseudo.strategies import number_in
from fer_lightning.resize import resize

log = logging.getLogger(__name__)

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.05}


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05
) -> LambdaLR:
    """Linear warm-up then cosine decay to zero, stepped per batch."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return LambdaLR(optimizer, factor)


def _metrics(prefix: str) -> MetricCollection:
    kw = {"num_classes": NUM_CLASSES}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(average="micro", **kw),
            "macro_f1": MulticlassF1Score(average="macro", **kw),
            "f1": MulticlassF1Score(average="none", **kw),
            "precision": MulticlassPrecision(average="none", **kw),
            "recall": MulticlassRecall(average="none", **kw),
            "confusion_matrix": MulticlassConfusionMatrix(**kw),
        },
        prefix=prefix,
    )


# the checkpoint entry that says how to feed the network (read by models/checkpoints.py)
INFERENCE_KEY = "fer_inference"


class FERClassifier(pl.LightningModule):
    """Fine-tunes a timm backbone with soft-target cross-entropy; logs FER metrics.

    ``image_size`` records the training resolution so evaluation and prediction reuse it.
    Inputs are uint8 RGB images (NCHW, 0..255, as the data pipelines yield them); the
    model normalises them with its backbone's pretrained mean/std (:meth:`normalize`).
    Optimizer and scheduler come as plain ``_target_`` mappings (not partials) so the
    hyperparameters stored in checkpoints are plain data and load with ``weights_only``.
    """

    def __init__(
        self,
        backbone: str = "mobilenetv1_100",
        pretrained: bool = False,
        weights: str | None = None,
        drop_rate: float = 0.2,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        freeze_backbone_epochs: int = 0,
        label_smoothing: float = 0.1,
        class_weights: Sequence[float] | None = None,
        image_size: int | None = None,
        channels_last: bool = True,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        super().__init__()
        # plain containers, so checkpoints hold no OmegaConf objects (weights_only loading)
        optimizer, scheduler, class_weights, compile = (
            OmegaConf.to_container(v) if isinstance(v, DictConfig | ListConfig) else v
            for v in (optimizer, scheduler, class_weights, compile)
        )
        self.save_hyperparameters(logger=False)
        # a subclass's own init arguments are collected too: keep them plain data as well
        for key, value in self.hparams.items():
            if isinstance(value, DictConfig | ListConfig):
                self.hparams[key] = OmegaConf.to_container(value, resolve=True)
        type(self).check_options(self.hparams)
        self.net = create_backbone(
            backbone, NUM_CLASSES, pretrained=pretrained, weights=weights, drop_rate=drop_rate
        )
        self.optimizer_cfg = dict(optimizer or DEFAULT_OPTIMIZER)
        self.scheduler_cfg = dict(scheduler) if scheduler else None
        self.freeze_backbone_epochs = freeze_backbone_epochs
        self.label_smoothing = label_smoothing
        cw = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", cw, persistent=False)
        # not persistent: derived from the backbone's name, so checkpoints keep their keys
        mean, std = backbone_mean_std(backbone)
        self.register_buffer("input_mean", 255 * torch.tensor(mean).view(1, -1, 1, 1), False)
        self.register_buffer("input_std", 255 * torch.tensor(std).view(1, -1, 1, 1), False)
        self.val_metrics = _metrics("val/")
        self.test_metrics = _metrics("test/")
        self.channels_last = channels_last
        self.compile_net = compile
        self.memory_format = torch.contiguous_format  # inputs follow the weights' layout

    @classmethod
    def option_names(cls) -> set[str]:
        """The ``model.*`` keys this class takes: its constructor's and its bases' arguments."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            names |= {p.name for p in params if p.kind in named} - {"self"}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return names

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Check the ``model.*`` options: fer-train calls it before anything is written, the
        constructor calls it again, so each rule lives here once. Subclasses add theirs."""
        hydra_keys = {k for k in options if k.startswith("_") and k.endswith("_")}  # _target_
        unknown = sorted(set(options) - cls.option_names() - hydra_keys)
        if unknown:
            raise ConfigError(
                f"model: unknown option(s) {unknown} for {cls.__name__}; valid: "
                + ", ".join(sorted(cls.option_names()))
            )
        check_backbone(str(options.get("backbone", "mobilenetv1_100")))
        for name in ("drop_rate", "label_smoothing"):
            if not number_in(options.get(name, 0.0), 0.0, 1.0) or options.get(name) == 1.0:
                raise ConfigError(f"model.{name}={options.get(name)!r}: must be a number in [0, 1)")
        epochs = options.get("freeze_backbone_epochs", 0)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(f"model.freeze_backbone_epochs={epochs!r}: must be an integer >= 0")
        weights = options.get("class_weights")
        if weights is not None and (
            not isinstance(weights, Sequence)
            or isinstance(weights, str)
            or len(weights) != NUM_CLASSES
            or not all(number_in(w, 0.0, math.inf) for w in weights)
        ):
            raise ConfigError(
                f"model.class_weights={weights!r}: must be {NUM_CLASSES} non-negative numbers, "
                "one per emotion in the order " + ", ".join(EMOTIONS)
            )
        lr = (options.get("optimizer") or {}).get("lr")
        if lr is not None and (not number_in(lr, 0.0, math.inf) or lr == 0):
            raise ConfigError(f"model.optimizer.lr={lr!r}: must be a number > 0")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record how to feed the network, so inference never needs the training class."""
        mean, std = backbone_mean_std(self.hparams.backbone)
        checkpoint[INFERENCE_KEY] = {
            "backbone": self.hparams.backbone,
            "image_size": self.hparams.image_size,
            "mean": list(mean),
            "std": list(std),
            "labels": list(EMOTIONS),
        }

    def configure_model(self) -> None:
        """Apply :meth:`speed_up` once the device is known (fit, test and predict)."""
        # also called by load_from_checkpoint, without a trainer
        self.speed_up(self.device if self._trainer is None else self.trainer.strategy.root_device)

    def speed_up(self, device: torch.device) -> None:
        """GPU speed-ups for running on ``device``; idempotent.

        channels_last lets cuDNN use its NHWC (tensor-core) kernels; on CPU it is left
        off so CPU results do not change. ``compile`` (true, or ``torch.compile``
        arguments such as ``{mode: max-autotune}``) compiles the backbone in place, so
        state-dict keys do not change. It pays on long GPU runs, where a minute or two of
        compilation is won back by faster steps; on short or CPU runs it rarely does.
        """
        on_cuda = device.type == "cuda"
        if self.channels_last and on_cuda and self.memory_format is torch.contiguous_format:
            self.memory_format = torch.channels_last
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and getattr(self.net, "_compiled_call_impl", None) is None:
            options = self.compile_net if isinstance(self.compile_net, Mapping) else {}
            self.net.compile(**options)
            log.info("backbone compiled with torch.compile(%s)", options or "")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (0..255) of any size to the float input the backbone's weights expect.

        Runs batched wherever the model runs, so loaders move bytes, not floats: the
        layout change comes first, while the tensor is still one byte per value, then the
        resize to ``image_size`` (:func:`fer_lightning.resize.resize`, the one resize of
        every path and of the ONNX graph), so the CPU pipelines can work at the faces' own
        resolution.
        """
        x = x.contiguous(memory_format=self.memory_format).float()
        size = self.hparams.image_size
        if size and tuple(x.shape[-2:]) != (size, size):
            x = resize(x, size)
        return (x - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of uint8 RGB images ``[N, 3, H, W]``."""
        return self.net(self.normalize(x))

    # -- transfer learning: head only for the first epochs, then everything ---------
    def on_train_epoch_start(self) -> None:
        train_backbone = self.current_epoch >= self.freeze_backbone_epochs
        head = set(self.net.get_classifier().parameters())
        for p in self.net.parameters():
            p.requires_grad_(train_backbone or p in head)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, targets, weights = batch
        loss = soft_cross_entropy(
            self(x), targets, weights, self.label_smoothing, self.class_weights
        )
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _eval_step(self, batch, metrics: MetricCollection, stage: str) -> None:
        x, targets, _ = batch
        logits = self(x)
        labels = targets.argmax(dim=1)
        loss = soft_cross_entropy(logits, targets)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val")
        metrics.update(logits, labels)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def _log_epoch(self, metrics: MetricCollection, stage: str) -> torch.Tensor:
        values = metrics.compute()
        metrics.reset()
        self.log(f"{stage}/acc", values[f"{stage}/acc"], prog_bar=True)
        self.log(f"{stage}/macro_f1", values[f"{stage}/macro_f1"], prog_bar=True)
        per_class = ["f1"] if stage == "val" else ["f1", "precision", "recall"]
        for name in per_class:
            for emotion, value in zip(EMOTIONS, values[f"{stage}/{name}"], strict=True):
                self.log(f"{stage}/{name}_{emotion}", value)
        cm = values[f"{stage}/confusion_matrix"]
        if stage == "test":  # an emotion with no test face has no F1: the tables say so
            for emotion, count in zip(EMOTIONS, cm.sum(dim=1), strict=True):
                self.log(f"{stage}/support_{emotion}", count.float())
        return cm

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        cm = self._log_epoch(self.test_metrics, "test")
        self.test_confusion_matrix = cm.cpu()
        if isinstance(self.logger, TensorBoardLogger) and self.trainer.is_global_zero:
            fig = confusion_matrix_figure(cm.cpu().numpy(), EMOTIONS, "test")
            self.logger.experiment.add_figure("test/confusion_matrix", fig, self.global_step)

    # -- prediction (pseudo-labeling, fer-predict, ONNX) ------------------------------
    @torch.no_grad()
    def predict_probs(self, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Softmax probabilities; with ``flip``, averaged with the mirrored faces (TTA)."""
        probs = self(x).float().softmax(dim=-1)
        if flip:
            probs = (probs + self(x.flip(-1)).float().softmax(dim=-1)) / 2
        return probs

    def _total_steps(self) -> int:
        """Optimizer steps of the whole fit, for the per-step schedule.

        Computed from the data size rather than ``trainer.estimated_stepping_batches``,
        which builds (and iterates) the train loader before a checkpoint is restored and
        so would seed a resumed fit's first epoch as epoch 0.
        """
        trainer = self.trainer
        unbounded = trainer.max_epochs is None or trainer.max_epochs < 0
        if unbounded and trainer.max_steps > 0:  # a step budget (every fit of a study alike)
            return trainer.max_steps
        size = getattr(trainer.datamodule, "train_size", None)
        if size is None or trainer.max_epochs is None or trainer.max_epochs < 0:
            return max(1, int(trainer.estimated_stepping_batches))
        per_rank = math.ceil(size() / max(1, trainer.world_size))
        batches = math.ceil(per_rank / trainer.datamodule.batch_size)
        if isinstance(trainer.limit_train_batches, int):
            batches = min(batches, trainer.limit_train_batches)
        steps = math.ceil(batches / trainer.accumulate_grad_batches) * trainer.max_epochs
        if trainer.max_steps > 0:
            steps = min(steps, trainer.max_steps)
        return max(1, steps)

    def configure_optimizers(self):
        optimizer = instantiate(self.optimizer_cfg, params=self.parameters())
        if self.scheduler_cfg is None:
            return optimizer
        total = self._total_steps()
        scheduler = instantiate(self.scheduler_cfg, optimizer=optimizer, total_steps=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
