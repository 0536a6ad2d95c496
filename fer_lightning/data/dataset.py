"""Image datasets over numpy manifests (decode with OpenCV, augment with albumentations)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, RandomSampler, Sampler, WeightedRandomSampler

from fer_lightning.data.images import read_rgb
from fer_lightning.emotions import NUM_CLASSES


def epoch_seed(seed: int, round_index: int, epoch: int) -> int:
    """The seed of one training epoch: its randomness depends on nothing that ran before."""
    return (seed * 1_000_003 + round_index * 10_007 + epoch) % 2**31


def model_seed(seed: int, round_index: int) -> int:
    """The seed a round's fresh model is built with (its random init, the head's too)."""
    return (seed * 1_000_003 + round_index * 10_007 + 9_973) % 2**31


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Hard labels (0..C-1) as float32 one-hot rows."""
    targets = np.zeros((len(labels), num_classes), dtype=np.float32)
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


class EpochSeeds(Sampler[tuple[int, int]]):
    """Pairs every index of ``sampler`` with the epoch's seed: ``(i, seed)``.

    Persistent workers keep the dataset copy they started with; the indices are the only
    thing that reaches them each epoch, so the seed travels with them. ``sampler`` draws
    the order from its own ``generator``; :meth:`reseed` seeds both before an epoch.
    """

    def __init__(self, sampler: RandomSampler | WeightedRandomSampler, seed: int) -> None:
        self.sampler = sampler
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self.sampler.generator.manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        seed = self.seed
        return ((int(i), seed) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


class TrainingDataset(Dataset):
    """Yields ``(image, target, weight)``: target is a probability row (one-hot or soft).

    One representation for labeled and pseudo-labeled images keeps the loss single-path.
    Indexed with ``(i, epoch_seed)`` (see :class:`EpochSeeds`), the augmentation of
    item ``i`` is a pure function of both: the same in any worker, any order and after a
    resume (albumentations otherwise seeds itself from the OS).
    """

    def __init__(
        self,
        paths: np.ndarray,
        targets: np.ndarray,
        weights: np.ndarray,
        transform: Callable[..., dict],
        read: Callable[[str], np.ndarray] = read_rgb,
    ) -> None:
        self.paths = np.asarray(paths, dtype=np.str_)
        self.read = read  # the file (read_rgb) or the decoded-image cache
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if not len(self.paths) == len(self.targets) == len(self.weights):
            raise ValueError("paths, targets and weights must have the same length")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None:
            seed_transform(self.transform, seed, i)
        image = self.transform(image=self.read(str(self.paths[i])))["image"]
        return image, self.targets[i], self.weights[i]


def seed_transform(transform, seed: int, i: int, stream: int = 0) -> None:
    """Make item ``i``'s augmentation a pure function of (epoch seed, i, stream).

    The same in any worker, any order and after a resume (albumentations otherwise seeds
    itself from the OS). One stream for the whole pipeline: ``Compose.set_random_seed``
    gives every transform its own identically seeded generator, so their draws coincide
    (flip iff affine), and re-seeding them all costs a quarter of the pipeline's time.
    """
    entropy = [seed, i] if stream == 0 else [seed, i, stream]
    item_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    transform.set_random_state(np.random.default_rng(item_seed), random.Random(item_seed))


class PoolDataset(Dataset):
    """Yields ``(weak view, strong view, index)`` of a pool face for online methods.

    No label leaves it (the pool's hidden labels are for the audit only, which looks them
    up by index); keyed ``(i, epoch_seed)`` like :class:`TrainingDataset`, each view with
    its own stream.
    """

    def __init__(
        self,
        paths: np.ndarray,
        weak: Callable[..., dict],
        strong: Callable[..., dict],
        read: Callable[[str], np.ndarray] = read_rgb,
    ) -> None:
        self.paths = np.asarray(paths, dtype=np.str_)
        self.weak, self.strong, self.read = weak, strong, read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None:
            seed_transform(self.weak, seed, i, 1)
            seed_transform(self.strong, seed, i, 2)
        image = self.read(str(self.paths[i]))
        return self.weak(image=image)["image"], self.strong(image=image)["image"], i


class PredictDataset(Dataset):
    """Yields ``(image, index)`` and nothing else: a pool's true labels cannot leak from here."""

    def __init__(
        self,
        paths: np.ndarray,
        transform: Callable[..., dict],
        read: Callable[[str], np.ndarray] = read_rgb,
    ) -> None:
        self.paths = np.asarray(paths, dtype=np.str_)
        self.transform = transform
        self.read = read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=self.read(str(self.paths[i])))["image"], i
