"""FERDataModule over a tiny RAF-DB layout: splits on disk, loaders, pseudo-label hook."""

from __future__ import annotations

import functools

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

from fer_lightning.data.datamodule import FERDataModule, RoundData
from fer_lightning.data.dataset import TrainingDataset, one_hot
from fer_lightning.data.sources import read_rafdb
from fer_lightning.errors import ConfigError
from fer_lightning.pseudo.pseudo_set import PseudoSet
from tests.helpers.layouts import make_rafdb, write_image

TRAIN = [8, 4, 4, 12, 8, 4, 8]
TEST = [2, 1, 1, 3, 2, 1, 2]


@pytest.fixture
def raf(tmp_path):
    return make_rafdb(tmp_path / "raf", TRAIN, TEST)


def pseudo_set(paths: np.ndarray, targets: np.ndarray, weights=None) -> PseudoSet:
    """A pseudo set as a manifest holds one: hard labels and confidences from the targets."""
    n = len(paths)
    weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    return PseudoSet(np.asarray(paths), targets.argmax(1), targets, weights, targets.max(1))


def _dm(root, tmp_path, **kw) -> FERDataModule:
    opts = dict(
        source=functools.partial(read_rafdb),
        root=str(root),
        image_size=24,
        batch_size=8,
        num_workers=0,
        label_fraction=0.5,
        splits_dir=str(tmp_path / "run" / "splits"),
    )
    opts.update(kw)
    return FERDataModule(**opts)


def test_split_is_written_once_and_reread(raf, tmp_path):
    dm = _dm(raf, tmp_path)
    dm.prepare_data()
    files = sorted(p.name for p in (tmp_path / "run" / "splits").iterdir())
    assert files == ["labeled.csv", "test.csv", "unlabeled.csv", "val.csv"]
    dm.setup("fit")
    s = dm.splits
    assert len(s.labeled) + len(s.unlabeled) + len(s.val) == sum(TRAIN)
    assert len(s.test) == sum(TEST)
    again = _dm(raf, tmp_path, label_fraction=0.9)  # a resumed run re-reads, never re-splits
    again.setup("fit")
    assert np.array_equal(again.splits.labeled.paths, s.labeled.paths)


def test_loaders_yield_uint8_images_and_one_hot_targets(raf, tmp_path):
    """Bytes cross the worker queue and the device copy; the model normalises them."""
    dm = _dm(raf, tmp_path)
    dm.setup("fit")
    x, target, weight = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.uint8  # the faces' own 16 px
    assert torch.all(target.sum(1) == 1) and torch.all(weight == 1)
    xv, tv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (3, 16, 16) and xv.dtype == torch.uint8 and tv.shape[1] == 7


def test_seeded_augmentations_are_reproducible_and_independent():
    """Item (i, seed) always gets the same draws, and one op's draw says nothing of another's.

    Seeding each op with the same seed (albumentations' Compose.set_random_seed) made
    every p=0.5 op fire together; here the two flips must show all four combinations.
    """
    image = np.zeros((8, 8, 3), np.uint8)
    image[:4, :4] = 255  # a bright top-left corner: its position tells which flips ran
    flips = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), ToTensorV2()])
    dataset = TrainingDataset(
        np.array(["face.png"] * 64),
        one_hot(np.zeros(64, int)),
        np.ones(64),
        flips,
        read=lambda path: image,
    )

    def corners(seed: int) -> list[tuple[int, ...]]:
        return [tuple((dataset[(i, seed)][0][0] == 255).nonzero()[0].tolist()) for i in range(64)]

    first = corners(7)
    assert corners(7) == first and corners(8) != first
    assert set(first) == {(0, 0), (0, 4), (4, 0), (4, 4)}


def test_predict_loader_carries_no_labels(raf, tmp_path):
    dm = _dm(raf, tmp_path)
    dm.setup("fit")
    batches = list(dm.predict_loader(dm.pool().paths))
    assert all(len(b) == 2 for b in batches)
    index = torch.cat([b[1] for b in batches])
    assert index.tolist() == list(range(len(dm.splits.unlabeled)))


def test_pseudo_labels_join_the_training_set(raf, tmp_path):
    dm = _dm(raf, tmp_path)
    dm.setup("fit")
    pool = dm.pool().paths[:3]
    soft = np.full((3, 7), 1 / 7, np.float32)
    dm.start_round(RoundData(1, pseudo_set(pool, soft, np.array([0.5, 0.6, 0.7]))))
    ds = dm.train_dataset()
    assert len(ds) == len(dm.splits.labeled) + 3
    torch.testing.assert_close(ds.targets[-3:], torch.from_numpy(soft))
    torch.testing.assert_close(ds.weights[-3:], torch.tensor([0.5, 0.6, 0.7]))
    with pytest.raises(ValueError, match=r"targets of shape \(3, 7\)"):
        pseudo_set(pool, soft[:, :3])


def test_balanced_sampler_evens_out_classes(raf, tmp_path):
    dm = _dm(raf, tmp_path, label_fraction=None, balanced_sampler=True, batch_size=512)
    dm.setup("fit")
    loader = dm.train_dataloader()  # its generator moves on with every pass
    draws = torch.cat([next(iter(loader))[1].argmax(1) for _ in range(20)])
    freq = torch.bincount(draws, minlength=7).float() / len(draws)
    assert freq.min() > 0.08 and freq.max() < 0.22  # uniform would be 0.143


def test_missing_split_names_the_keys(raf, tmp_path):
    dm = _dm(raf, tmp_path, test_split="valid", splits_dir=None)
    with pytest.raises(ValueError, match="split 'valid' not found.*data.test_split"):
        dm.setup("test")


def test_pipelines_work_at_the_images_own_size_and_the_model_resizes(raf, tmp_path):
    """16 px faces for a 24 px model: loaders yield 16 px, the model sees 24 px."""
    dm = _dm(raf, tmp_path)
    dm.setup("fit")
    assert dm.work_size() == 16
    x, _, _ = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, 16, 16)
    assert tuple(next(iter(dm.val_dataloader()))[0].shape[1:]) == (3, 16, 16)
    from fer_lightning.models.classifier import FERClassifier

    model = FERClassifier(image_size=24)
    assert tuple(model.normalize(x).shape[1:]) == (3, 24, 24)
    small = _dm(raf, tmp_path, image_size=12, splits_dir=str(tmp_path / "b"))
    small.setup("fit")
    assert small.work_size() == 12  # larger faces than the model: shrunk on the CPU
    fixed = _dm(raf, tmp_path, augment_size=24, splits_dir=str(tmp_path / "c"))
    fixed.setup("fit")
    assert fixed.work_size() == 24


def test_evaluation_feeds_the_model_the_pixels_fer_predict_and_onnx_feed_it(raf, tmp_path):
    """16 px faces, a 12 px model: evaluation and the pool pass keep the faces at 16 px and
    the model's resize shrinks them, as fer-predict's and the ONNX graph's (one resize)."""
    from fer_lightning.data.images import read_rgb
    from fer_lightning.models.classifier import FERClassifier
    from fer_lightning.resize import resize_image

    dm = _dm(raf, tmp_path, image_size=12)
    dm.setup("fit")
    val, _ = next(iter(dm.val_dataloader()))[:2]
    pool, index = next(iter(dm.predict_loader(dm.pool().paths)))
    assert tuple(val.shape[1:]) == tuple(pool.shape[1:]) == (3, 16, 16)
    model = FERClassifier(backbone="mobilenetv1_100", image_size=12)
    paths = dm.pool().paths[index.numpy()]
    predict = torch.stack([resize_image(read_rgb(str(p)), 12) for p in paths])
    torch.testing.assert_close(model.normalize(pool), model.normalize(predict))


def test_memory_cache_serves_the_same_images_and_refuses_a_set_over_its_limit(
    raf, tmp_path, caplog
):
    on_disk = _dm(raf, tmp_path)
    cached = _dm(raf, tmp_path, cache="memory")
    for dm in (on_disk, cached):
        dm.setup("fit")
    with caplog.at_level("INFO", logger="fer_lightning"):
        a, b = on_disk.train_dataset(), cached.train_dataset()
    n = sum(TRAIN) + sum(TEST)
    assert f"image cache: {n} images of 16x16 px in memory" in caplog.text
    for i in range(3):
        torch.testing.assert_close(a[(i, 7)][0], b[(i, 7)][0])  # same seed, same augmentation
    pool = on_disk.pool().paths
    assert torch.equal(
        next(iter(on_disk.predict_loader(pool)))[0], next(iter(cached.predict_loader(pool)))[0]
    )
    tiny = _dm(raf, tmp_path, cache="memory", cache_max_gib=1e-6, splits_dir=str(tmp_path / "d"))
    tiny.setup("fit")
    with pytest.raises(ConfigError, match=r"data.cache=memory: 60 images of 16x16 px need"):
        tiny.train_dataset()


def test_images_of_several_sizes_are_resized_on_the_cpu_and_logged_once(raf, tmp_path, caplog):
    """Mixed 16/20 px faces: batches still stack, at the model's size, with one log line."""
    aligned = sorted((raf / "basic" / "Image" / "aligned").glob("*.jpg"))
    for i, path in enumerate(aligned[::2]):
        write_image(path, seed=i, size=20)
    dm = _dm(raf, tmp_path)
    with caplog.at_level("INFO", logger="fer_lightning"):
        dm.setup("fit")
        x, _, _ = next(iter(dm.train_dataloader()))
        v, _ = next(iter(dm.val_dataloader()))[:2]
        assert dm.work_size() == 24
    assert tuple(x.shape[1:]) == tuple(v.shape[1:]) == (3, 24, 24)
    assert caplog.text.count("images of several sizes (16x16, 20x20)") == 1


def test_labeled_share_draws_that_share_of_an_epoch_from_the_labeled_split(raf, tmp_path):
    dm = _dm(raf, tmp_path, batch_size=4096)
    dm.setup("fit")
    pool = np.tile(dm.pool().paths, 40)  # a pool far larger than the labeled split
    labeled = len(dm.splits.labeled)
    targets = np.eye(7, dtype=np.float32)[np.zeros(len(pool), int)]
    dm.start_round(RoundData(1, pseudo_set(pool, targets), labeled_share=0.5))
    draws = list(dm.train_dataloader().sampler)
    assert len(draws) == labeled + len(pool)  # an epoch keeps its size
    from_labeled = sum(i < labeled for i, _ in draws) / len(draws)
    assert len(pool) > 2 * labeled and from_labeled == pytest.approx(0.5, abs=0.08)
    dm.start_round(RoundData(1, pseudo_set(pool, targets)))  # every image once, random order
    assert sorted(i for i, _ in dm.train_dataloader().sampler) == list(range(len(draws)))
