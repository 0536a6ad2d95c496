"""Augmenting at the faces' own size, then resizing on the device, is the same augmentation.

The old pipeline cropped a 100 px face up to 224 px and augmented there; the new one
augments at 100 px and the model resizes to 224. Not pixel-equal (the interpolation
happens in another order), so the distributions are compared: where the crop lands and
how large it is (on an image whose colour encodes the pixel's position), the colour
moments, and the area of the holes.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fer_lightning.data.transforms import check_augment, train_transform
from fer_lightning.errors import ConfigError
from fer_lightning.models.classifier import resize

SOURCE, MODEL, SAMPLES = 100, 224, 300


def _coordinates() -> np.ndarray:
    """Red = x, green = y (0..255 across the image), blue constant."""
    ramp = np.linspace(0, 255, SOURCE)
    image = np.zeros((SOURCE, SOURCE, 3), np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = 128
    return image


def _outputs(image: np.ndarray, work: int, **augment) -> torch.Tensor:
    """SAMPLES augmentations at ``work`` px, resized to the model's size as the model does."""
    transform = train_transform(work, **augment)
    out = []
    for i in range(SAMPLES):
        transform.set_random_state(np.random.default_rng(i), random.Random(i))
        out.append(transform(image=image)["image"])
    return resize(torch.stack(out).float(), MODEL)


def _close(old: torch.Tensor, new: torch.Tensor, tolerance: float) -> None:
    """Same mean and spread over the samples, within ``tolerance`` (in 0..255 units)."""
    assert abs(old.mean() - new.mean()) < tolerance, (old.mean(), new.mean())
    assert abs(old.std() - new.std()) < tolerance, (old.std(), new.std())


def test_crop_position_scale_and_rotation_have_the_same_distribution():
    geometry = {"color": 0.0, "dropout": 0.0}
    old = _outputs(_coordinates(), MODEL, **geometry)
    new = _outputs(_coordinates(), SOURCE, **geometry)
    for channel in (0, 1):  # x and y
        values = [img[channel] for img in (old, new)]
        centre = [v.mean(dim=(1, 2)) for v in values]  # where the crop lands
        spread = [v.flatten(1).quantile(0.95, dim=1) - v.flatten(1).quantile(0.05, dim=1)
                  for v in values]  # fmt: skip  # how much of the face it holds
        _close(*centre, tolerance=3.0)
        _close(*spread, tolerance=3.0)


def test_colour_moments_and_hole_area_have_the_same_distribution():
    grey = np.full((SOURCE, SOURCE, 3), 128, np.uint8)
    old = _outputs(grey, MODEL, dropout=0.0)
    new = _outputs(grey, SOURCE, dropout=0.0)
    for channel in range(3):
        _close(old[:, channel].mean(dim=(1, 2)), new[:, channel].mean(dim=(1, 2)), tolerance=2.0)
    white = np.full((SOURCE, SOURCE, 3), 255, np.uint8)
    holes = {"color": 0.0, "dropout": 1.0, "rotate": 0.0, "translate": 0.0}
    area = [(_outputs(white, w, **holes) < 128).all(dim=1).float().mean(dim=(1, 2))
            for w in (MODEL, SOURCE)]  # fmt: skip
    _close(*area, tolerance=0.01)
    assert area[0].mean() > 0.01  # the holes are there


def test_new_pipeline_moves_a_fifth_of_the_bytes():
    old, new = train_transform(MODEL), train_transform(SOURCE)
    image = _coordinates()
    assert new(image=image)["image"].numel() * 5 < old(image=image)["image"].numel()


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"colour": 0.2}, r"unknown option\(s\) \['colour'\]"),
        ({"rotate": -3}, r"rotate=-3: must be a number in \[0, 180\]"),
        ({"crop_scale": [0.9, 0.5]}, "0 < low <= high <= 1"),
    ],
)
def test_bad_augment_options_name_the_key(options, phrase):
    with pytest.raises(ConfigError, match=phrase):
        check_augment(options, "data.augment")
