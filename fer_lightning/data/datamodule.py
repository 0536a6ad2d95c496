"""FERDataModule: labeled, unlabeled, val and test loaders over a source, plus pseudo labels."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from fer_lightning.data.dataset import (
    EpochSeeds,
    PoolDataset,
    PredictDataset,
    TrainingDataset,
    epoch_seed,
    one_hot,
)
from fer_lightning.data.image_cache import CACHE_MODES, ImageCache
from fer_lightning.data.images import check_on_corrupt, read_rgb
from fer_lightning.data.manifest import Manifest
from fer_lightning.data.sources import check_images, read_unlabeled_folder
from fer_lightning.data.splits import (
    ON_DUPLICATE,
    SPLIT_NAMES,
    Splits,
    check_copies,
    check_disjoint,
    drop_copies,
    make_splits,
)
from fer_lightning.data.transforms import (
    eval_transform,
    strong_transform,
    train_transform,
    weak_transform,
)
from fer_lightning.emotions import NUM_CLASSES
from fer_lightning.errors import ConfigError, DataError
from fer_lightning.hardware import auto_workers
from fer_lightning.pseudo.pseudo_set import PseudoSet

log = logging.getLogger(__name__)

Source = Callable[[str], Mapping[str, Manifest]]
PROBE = 16  # images per split whose size decides the CPU pipelines' size


@dataclass(frozen=True)
class RoundData:
    """What round ``index`` trains on beyond the labeled split (round 0: nothing)."""

    index: int = 0
    pseudo: PseudoSet | None = None
    augment: Mapping[str, Any] = field(default_factory=dict)  # over data.augment: a student's
    labeled_share: float | None = None  # that share of each epoch drawn from the labeled split


def pool_seed(seed: int) -> int:
    """The pool stream's seed within an epoch: its own, derived from the epoch's."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]) % 2**31


class FERDataModule(pl.LightningDataModule):
    """Reads a source, applies the split protocol and serves the four loaders.

    ``source(root)`` returns manifests by split name (RAF-DB, Kaggle, class folders
    or the synthetic set). The split is written to ``splits_dir`` once (rank 0, in
    ``prepare_data``) and re-read from there by every process and on resume.
    """

    def __init__(
        self,
        source: Source,
        root: str,
        train_split: str = "train",
        test_split: str = "test",
        image_size: int = 100,
        batch_size: int = 64,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        labels_per_class: int | Mapping[str, int] | None = None,
        folds: int | None = None,
        fold: int = 0,
        subject_pattern: str | None = None,
        label_fraction: float | None = None,
        val_fraction: float = 0.1,
        val_split: str | None = None,
        unlabeled_dir: str | None = None,
        split_seed: int = 0,
        on_corrupt: str = "fail",
        on_duplicate: str = "fail",
        min_image_side: int = 16,
        balanced_sampler: bool = False,
        augment: Mapping[str, Any] | None = None,
        augment_size: int | None = None,
        cache: str = "none",
        cache_max_gib: float = 4.0,
        splits_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_on_corrupt(on_corrupt)
        self.source = source
        self.root = str(root)
        self.train_split = train_split
        self.test_split = test_split
        self.image_size = image_size
        self.batch_size = batch_size
        if not (num_workers == "auto" or (isinstance(num_workers, int) and num_workers >= 0)):
            raise ConfigError(
                f"data.num_workers must be 'auto' or an int >= 0, got {num_workers!r}"
            )
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        if folds is not None and not (
            isinstance(folds, int) and not isinstance(folds, bool) and folds >= 2
        ):
            raise ConfigError(f"data.folds must be an integer >= 2 (or null), got {folds!r}")
        if folds is not None and not (isinstance(fold, int) and 0 <= fold < folds):
            raise ConfigError(f"data.fold must be one of 0..{folds - 1} (data.folds={folds})")
        self.folds, self.fold = folds, fold
        self.subject_pattern = subject_pattern
        self.labels_per_class = (
            dict(labels_per_class) if isinstance(labels_per_class, Mapping) else labels_per_class
        )
        self.label_fraction = label_fraction
        self.val_fraction = 0.0 if val_split else val_fraction
        self.val_split = val_split
        self.unlabeled_dir = unlabeled_dir
        self.split_seed = split_seed
        self.on_corrupt = on_corrupt
        if on_duplicate not in ON_DUPLICATE:
            raise ConfigError(
                f"data.on_duplicate must be one of {', '.join(ON_DUPLICATE)}, got {on_duplicate!r}"
            )
        self.on_duplicate = on_duplicate
        self.min_image_side = min_image_side
        self.balanced_sampler = balanced_sampler
        self.augment = dict(augment or {})
        if cache not in CACHE_MODES:
            raise ConfigError(f"data.cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
        self.augment_size = augment_size
        self.cache = cache
        self.cache_max_gib = cache_max_gib
        self._work: tuple[int, int | None] | None = None  # (work size, uniform native size)
        self._images: ImageCache | None = None
        self.splits_dir = Path(splits_dir) if splits_dir else None
        self.splits: Splits | None = None
        self.seed = seed
        self.round = RoundData()  # the rounds loop hands each round over (start_round)
        self._train_sampler: EpochSeeds | None = None
        self._pool_sampler: EpochSeeds | None = None

    # -- split protocol -------------------------------------------------------------
    def _splits_saved(self) -> bool:
        return self.splits_dir is not None and (self.splits_dir / "test.csv").is_file()

    def build_splits(self) -> Splits:
        """Read the source, check every image, and apply the split protocol."""
        manifests = self.source(self.root)
        if self.folds:
            manifests = self._cross_validation(manifests)
        names = [self.train_split, self.test_split, *([self.val_split] if self.val_split else [])]
        for name in names:
            if name not in manifests:
                raise DataError(
                    f"split {name!r} not found in {self.root}; found: "
                    f"{', '.join(sorted(manifests)) or 'none'} "
                    "(set data.train_split / data.test_split / data.val_split)"
                )
        train = check_images(manifests[self.train_split], self.on_corrupt, self.min_image_side)
        test = check_images(manifests[self.test_split], self.on_corrupt, self.min_image_side)
        val = None
        if self.val_split:  # a split of the source's own (FER2013's PublicTest), not carved
            val = check_images(manifests[self.val_split], self.on_corrupt, self.min_image_side)
        extra = None
        if self.unlabeled_dir:
            pool = read_unlabeled_folder(self.unlabeled_dir)
            extra = check_images(pool, self.on_corrupt, self.min_image_side)
        if self.on_duplicate == "drop":
            train, test, extra = drop_copies(train, test, extra)
            if val is not None:  # test stays whole, then validation; training loses copies
                val, test, _ = drop_copies(val, test)
                train, val, _ = drop_copies(train, val)
        splits = make_splits(
            train,
            test,
            labels_per_class=self.labels_per_class,
            label_fraction=self.label_fraction,
            val_fraction=self.val_fraction,
            seed=self.split_seed,
            extra_unlabeled=extra,
        )
        if val is None:
            return splits
        splits = dataclasses.replace(splits, val=val.subset(np.argsort(val.paths, kind="stable")))
        check_disjoint(splits)
        check_copies(splits)
        return splits

    def _cross_validation(self, manifests: Mapping[str, Manifest]) -> dict[str, Manifest]:
        """``data.fold`` of ``data.folds`` as the test split, the other folds as train.

        Folds hold whole subjects (``data.subject_pattern``'s first group, matched in each
        file name: a person is never in train and test), dealt out in an order shuffled by
        ``data.split_seed``; without a pattern, by image (said in the log).
        """
        if self.train_split not in manifests:
            raise DataError(
                f"split {self.train_split!r} not found in {self.root}; found: "
                f"{', '.join(sorted(manifests))} (set data.train_split)"
            )
        pooled = manifests[self.train_split]
        if self.test_split in manifests and self.test_split != self.train_split:
            pooled = pooled.concat(manifests[self.test_split])
        if self.subject_pattern:
            pattern = re.compile(self.subject_pattern)
            subjects = []
            for path in pooled.paths.tolist():
                found = pattern.search(Path(path).name)
                if found is None:
                    raise DataError(
                        f"{path}: data.subject_pattern={self.subject_pattern!r} does not match "
                        "its file name; give a pattern whose first group is the subject"
                    )
                subjects.append(found.group(1) if pattern.groups else found.group(0))
        else:
            log.info("data.folds=%d without data.subject_pattern: folds by image", self.folds)
            subjects = pooled.paths.tolist()
        people = np.array(sorted(set(subjects)))
        if len(people) < self.folds:
            raise DataError(
                f"data.folds={self.folds} but {self.root} has {len(people)} subjects; "
                "use fewer folds"
            )
        shuffled = np.random.default_rng(self.split_seed).permutation(people)
        fold_of = {person: i % self.folds for i, person in enumerate(shuffled)}
        test = np.array([fold_of[p] == self.fold for p in subjects])
        log.info(
            "fold %d of %d: %d test images of %d subjects, %d train images",
            self.fold,
            self.folds,
            int(test.sum()),
            sum(1 for p in people if fold_of[p] == self.fold),
            int((~test).sum()),
        )
        return {
            self.train_split: pooled.subset(np.flatnonzero(~test)),
            self.test_split: pooled.subset(np.flatnonzero(test)),
        }

    def prepare_data(self) -> None:
        if self.splits_dir is not None and not self._splits_saved():
            splits = self.build_splits()
            splits.save(self.splits_dir)
            log.info("split written to %s\n%s", self.splits_dir, splits.summary())

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        self.splits = Splits.load(self.splits_dir) if self._splits_saved() else self.build_splits()

    def _require_splits(self) -> Splits:
        if self.splits is None:
            self.setup()
        assert self.splits is not None
        return self.splits

    # -- the round being trained ---------------------------------------------------
    def start_round(self, data: RoundData) -> None:
        """The one hand-off of a round: its index (part of every epoch's seed), its pseudo
        set and the augmentation over ``data.augment`` that its student trains with."""
        self.round = data

    def pool(self, include_test: bool = False) -> Manifest:
        """The images a teacher labels (see :meth:`Splits.pool`)."""
        return self._require_splits().pool(include_test)

    # -- loaders --------------------------------------------------------------------
    def workers(self) -> int:
        """DataLoader workers per process: ``data.num_workers``, or sized to the machine."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        trainer = self.trainer
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        processes = trainer.num_devices if trainer is not None else 1
        return auto_workers(on_gpu, processes)

    def loader(
        self,
        dataset,
        sampler=None,
        persistent: bool = True,
        generator=None,
        drop_last=False,
        batch_size: int | None = None,
    ) -> DataLoader:
        """A DataLoader with this module's batch size, workers and memory settings.

        ``persistent=False`` for one-pass loaders (prediction), whose workers would
        otherwise idle until the loader is collected.
        """
        workers = self.workers()
        return DataLoader(
            dataset,
            generator=generator,
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=persistent and self.persistent_workers and workers > 0,
            drop_last=drop_last,
        )

    # -- image size on the CPU: augment at the faces' own size, resize on the device ---
    def _probe(self) -> tuple[int, int | None]:
        """(work size, the images' common square size or None), from a sample of images."""
        if self._work is None:
            splits = self._require_splits()
            sample = np.concatenate([splits.labeled.paths[:PROBE], splits.test.paths[:PROBE]])
            native = self._common_size(sample)
            self._work = (min(self.image_size, native) if native else self.image_size, native)
        return self._work

    def _common_size(self, paths: np.ndarray) -> int | None:
        """The images' common square size, or None (said in the log) when they differ."""
        shapes = {read_rgb(str(p)).shape[:2] for p in paths}
        (height, width), *others = sorted(shapes)
        if not others and height == width:
            return height
        log.info(
            "images of several sizes (%s): resized to data.image_size=%d on the CPU",
            ", ".join(f"{w}x{h}" for h, w in sorted(shapes)[:4]),
            self.image_size,
        )
        return None

    def work_size(self) -> int:
        """The size the CPU pipelines produce: ``min(data.image_size, the images' own size)``.

        Augmenting at the source resolution costs a fraction of augmenting at the model's
        (100 px faces for a 224 px model: 1/5 of the pixels), and the batches that cross
        the worker queues and the host-to-device copy shrink alike; the model resizes
        them to ``data.image_size`` on the device (``FERClassifier.normalize``).
        ``data.augment_size`` fixes it instead.
        """
        return self.augment_size or self._probe()[0]

    def read(self):
        """How images are read: from their files, or from the decoded-image cache."""
        if self.cache == "none":
            return read_rgb
        if self._images is None:
            splits = self._require_splits()
            # every image a run reads: pseudo-labeled ones come from the pool (or test)
            paths = np.concatenate([getattr(splits, n).paths for n in SPLIT_NAMES])
            size = self._probe()[1] or self.work_size()
            self._images = ImageCache(paths, size, self.cache_max_gib)
        return self._images

    def eval_transform(self):
        """Evaluation keeps faces at their own size: the model's resize, not the CPU's, brings
        them to ``data.image_size``, as in ``fer-predict`` and the ONNX graph (mixed sizes:
        to ``data.image_size`` on the CPU, the same filter in uint8)."""
        return eval_transform(self._probe()[1] or self.image_size)

    def predict_loader(self, paths: np.ndarray, sampler=None) -> DataLoader:
        """One pass over ``paths``, eval-transformed, yielding ``(images, index)`` only."""
        dataset = PredictDataset(paths, self.eval_transform(), self.read())
        return self.loader(dataset, sampler=sampler, persistent=False)

    def _eval_dataset(self, manifest: Manifest, transform=None, read=None) -> TrainingDataset:
        """Validation and test score the hard label: one-hot targets, whatever the manifest's."""
        return TrainingDataset(
            manifest.paths,
            one_hot(manifest.labels),
            np.ones(len(manifest), np.float32),
            self.eval_transform() if transform is None else transform,
            self.read() if read is None else read,
        )

    def train_size(self) -> int:
        """Images per training epoch: the labeled split plus the round's pseudo set."""
        pseudo = self.round.pseudo
        return len(self._require_splits().labeled) + (0 if pseudo is None else len(pseudo))

    def train_dataset(self) -> TrainingDataset:
        """The labeled split's targets (its distributions, e.g. FERPlus's vote shares, else
        one-hot) and the round's pseudo set: one kind of row, one loss."""
        labeled = self._require_splits().labeled
        paths, targets = labeled.paths, labeled.target_rows()
        weights = np.ones(len(labeled), np.float32)
        pseudo = self.round.pseudo
        if pseudo is not None:
            paths = np.concatenate([paths, pseudo.paths])
            targets = np.concatenate([targets, pseudo.targets])
            weights = np.concatenate([weights, pseudo.weights])
        transform = train_transform(self.work_size(), **{**self.augment, **self.round.augment})
        return TrainingDataset(paths, targets, weights, transform, self.read())

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """Labeled (+ pseudo) images; order and augmentation follow the epoch seed.

        The epoch comes from the trainer (restored on resume), so a resumed fit sees the
        same data stream as an uninterrupted one. Later epochs are re-seeded by
        :meth:`seed_epoch`; the seed reaches (persistent) workers with the indices.

        A module that trains on the pool as well (an online method: FixMatch) says how many
        pool faces it wants per labeled one (``unlabeled_ratio``, FixMatch's mu); it then gets
        ``{"labeled": ..., "pool": ...}``, the pool stream as long as the labeled one.
        """
        dataset = self.train_dataset()
        seed = epoch_seed(self.seed, self.round.index, self._next_epoch(dataset))
        # the order has its own generator (EpochSeeds seeds it): the DataLoader draws worker
        # seeds from the one it is given on its first epoch only, which would shift the order
        generator = torch.Generator()
        draw = self._draw_weights(dataset)
        if draw is None:
            order = RandomSampler(dataset, generator=generator)
        else:
            order = WeightedRandomSampler(
                draw, num_samples=len(dataset), replacement=True, generator=generator
            )
        self._train_sampler = EpochSeeds(order, seed)
        workers_seed = torch.Generator().manual_seed(seed)
        # a last batch of one face cannot train batch norm (it fails): that face waits a turn
        single = len(dataset) % self.batch_size == 1 and len(dataset) > 1
        labeled = self.loader(
            dataset, sampler=self._train_sampler, generator=workers_seed, drop_last=single
        )
        ratio = self._unlabeled_ratio()
        if not ratio:
            return labeled
        return {"labeled": labeled, "pool": self._pool_loader(len(labeled), ratio, seed)}

    def _unlabeled_ratio(self) -> int:
        module = None if self.trainer is None else self.trainer.lightning_module
        return int(getattr(module, "unlabeled_ratio", 0) or 0)

    def _pool_loader(self, batches: int, ratio: int, seed: int) -> DataLoader:
        """``batches`` batches of ``ratio`` x batch size pool faces, weak and strong views.

        Drawn without replacement, the pool cycled as often as the epoch needs; its order
        and augmentation have their own stream of the epoch seed (:meth:`seed_epoch`).
        """
        pool = self.pool()
        if len(pool) == 0:
            raise ConfigError(
                "model: an online method trains on the unlabeled pool, and this split has "
                "none (set data.label_fraction or data.labels_per_class, or data.unlabeled_dir)"
            )
        size = self.work_size()
        dataset = PoolDataset(pool.paths, weak_transform(size), strong_transform(size), self.read())
        per_batch = ratio * self.batch_size
        order = RandomSampler(dataset, num_samples=batches * per_batch, generator=torch.Generator())
        self._pool_sampler = EpochSeeds(order, pool_seed(seed))
        workers_seed = torch.Generator().manual_seed(pool_seed(seed))
        return self.loader(
            dataset, sampler=self._pool_sampler, generator=workers_seed, batch_size=per_batch
        )

    def _draw_weights(self, dataset: TrainingDataset) -> torch.Tensor | None:
        """Per-image draw weights: class-balanced and/or a labeled share; None: each once."""
        labeled = len(self._require_splits().labeled)
        share = self.round.labeled_share if len(dataset) > labeled else None
        if not self.balanced_sampler and share is None:
            return None
        weights = torch.ones(len(dataset), dtype=torch.float64)
        parts = [slice(0, labeled), slice(labeled, len(dataset))]
        if self.balanced_sampler:  # within each part, every class alike
            classes = dataset.targets.argmax(1)
            # a labeled face's class is its hard label, also where its target is soft
            classes[:labeled] = torch.as_tensor(self._require_splits().labeled.labels)
            for part in parts:
                counts = torch.bincount(classes[part], minlength=NUM_CLASSES).clamp(min=1)
                weights[part] = 1.0 / counts[classes[part]]
        if share is not None:
            for part, mass in zip(parts, (share, 1.0 - share), strict=True):
                weights[part] *= mass / weights[part].sum()
        return weights

    def seed_epoch(self, seed: int) -> None:
        """Seed the next epoch's order and augmentation of the current train loader."""
        if self._train_sampler is not None:
            self._train_sampler.reseed(seed)
        if self._pool_sampler is not None:
            self._pool_sampler.reseed(pool_seed(seed))

    def _next_epoch(self, dataset: TrainingDataset) -> int:
        """The epoch the loader is created for: Lightning makes it before any epoch hook.

        A ``last.ckpt`` saved at validation end restores the finished epoch as processed
        but not completed; the next one is then the epoch after it.
        """
        if self.trainer is None:
            return 0
        loop = self.trainer.fit_loop
        epoch = loop.epoch_progress.current.processed
        batches = -(-len(dataset) // self.batch_size)
        if loop.restarting and loop.epoch_loop.batch_progress.current.completed >= batches:
            epoch += 1
        return epoch

    def val_dataloader(self) -> DataLoader:
        return self.loader(self._eval_dataset(self._require_splits().val))

    def test_dataloader(self) -> DataLoader:
        return self.loader(self._eval_dataset(self._require_splits().test), persistent=False)

    def test_loader(self, manifest: Manifest) -> DataLoader:
        """Another labeled set (``eval_sets``) at this run's evaluation transform, its files
        read directly: the decoded-image cache holds this run's splits only."""
        native = self._common_size(manifest.paths[: 2 * PROBE])  # its own size, as this run's
        dataset = self._eval_dataset(manifest, eval_transform(native or self.image_size), read_rgb)
        return self.loader(dataset, persistent=False)
