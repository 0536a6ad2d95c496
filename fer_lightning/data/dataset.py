"""Image datasets over numpy manifests (decode with OpenCV, augment with albumentations)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from fer_lightning.data.manifest import DataError
from fer_lightning.emotions import NUM_CLASSES


def read_rgb(path: str) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot read image {path}: missing or corrupt file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def epoch_seed(seed: int, round_index: int, epoch: int) -> int:
    """The seed of one training epoch: its randomness depends on nothing that ran before."""
    return (seed * 1_000_003 + round_index * 10_007 + epoch) % 2**31


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Hard labels (0..C-1) as float32 one-hot rows."""
    targets = np.zeros((len(labels), num_classes), dtype=np.float32)
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


class TrainingDataset(Dataset):
    """Yields ``(image, target, weight)``: target is a probability row (one-hot or soft).

    One representation for labeled and pseudo-labeled images keeps the loss single-path.
    When ``epoch_seed`` is set (see :func:`epoch_seed`), the augmentation of item ``i``
    is a pure function of ``(epoch_seed, i)``: the same in any worker, any order and
    after a resume (albumentations otherwise seeds itself from the OS).
    """

    epoch_seed: int | None = None

    def __init__(
        self,
        paths: np.ndarray,
        targets: np.ndarray,
        weights: np.ndarray,
        transform: Callable[..., dict],
    ) -> None:
        self.paths = np.asarray(paths, dtype=np.str_)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if not len(self.paths) == len(self.targets) == len(self.weights):
            raise ValueError("paths, targets and weights must have the same length")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.epoch_seed is not None and hasattr(self.transform, "set_random_seed"):
            seed = np.random.SeedSequence([self.epoch_seed, i]).generate_state(1)[0]
            self.transform.set_random_seed(int(seed))
        image = self.transform(image=read_rgb(str(self.paths[i])))["image"]
        return image, self.targets[i], self.weights[i]


class PredictDataset(Dataset):
    """Yields ``(image, index)`` and nothing else: a pool's true labels cannot leak from here."""

    def __init__(self, paths: np.ndarray, transform: Callable[..., dict]) -> None:
        self.paths = np.asarray(paths, dtype=np.str_)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=read_rgb(str(self.paths[i])))["image"], i
