"""All augmentation lives here (albumentations), so another backend can replace it in one place.

Both pipelines end in uint8 CHW tensors: normalisation belongs to the model
(:meth:`FERClassifier.normalize`), which runs it batched on the device. Batches then
cross worker queues, pinned memory and the host-to-device copy at a quarter of the
float32 size, and no worker spends time on a per-image float pass (about 40 % of the
pipeline's time at 224 px, per ``benchmarks/data_pipeline.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from fer_lightning.errors import ConfigError


def train_transform(
    image_size: int,
    *,
    crop_scale: Sequence[float] = (0.8, 1.0),
    rotate: float = 10.0,
    translate: float = 0.05,
    color: float = 0.2,
    dropout: float = 0.3,
) -> A.Compose:
    """Training pipeline: random resized crop, shift/scale/rotate, flip, colour jitter, cutout.

    ``color`` is the jitter strength (0 disables it) and ``dropout`` the probability
    of coarse dropout; a noisy student uses larger values than its teacher.
    """
    ops: list[A.BasicTransform] = [
        A.RandomResizedCrop(
            size=(image_size, image_size),
            scale=tuple(crop_scale),
            ratio=(0.9, 1.1),
            area_for_downscale="image",
        ),
        A.Affine(
            rotate=(-rotate, rotate),
            translate_percent=(-translate, translate),
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.5,
        ),
        A.HorizontalFlip(p=0.5),
    ]
    if color > 0:
        ops.append(
            A.ColorJitter(brightness=color, contrast=color, saturation=color, hue=color / 4, p=0.8)
        )
    if dropout > 0:
        ops.append(
            A.CoarseDropout(
                num_holes_range=(1, 2),
                hole_height_range=(0.1, 0.25),
                hole_width_range=(0.1, 0.25),
                p=dropout,
            )
        )
    return A.Compose([*ops, ToTensorV2()])


def weak_transform(image_size: int) -> A.Compose:
    """FixMatch's weak view of a pool face: flip and a shift of up to 12.5 %, nothing else,
    so the pseudo-target it yields is as close to the face as training allows."""
    return A.Compose(
        [
            A.Resize(image_size, image_size, area_for_downscale="image"),
            A.HorizontalFlip(p=0.5),
            A.Affine(translate_percent=(-0.125, 0.125), border_mode=cv2.BORDER_REFLECT_101, p=1),
            ToTensorV2(),
        ]
    )


def strong_transform(image_size: int, num_ops: int = 2) -> A.Compose:
    """FixMatch's strong view: the weak view, then RandAugment and a cutout, per face.

    RandAugment as FixMatch runs it: ``num_ops`` operations drawn from its pool, each at a
    magnitude drawn uniformly up to the maximum (10), which is what sampling each op's
    parameter uniformly over its range does; then one grey square hole of up to half the
    side. Seeded like every pipeline here (:class:`~fer_lightning.data.dataset.PoolDataset`).
    """
    grey = {"border_mode": cv2.BORDER_CONSTANT, "fill": 127, "p": 1}
    pool = [
        A.NoOp(),
        A.AutoContrast(p=1),
        A.Equalize(p=1),
        A.Posterize(num_bits=(4, 8), p=1),
        A.Solarize(threshold_range=(0.0, 1.0), p=1),
        A.RandomBrightnessContrast(brightness_limit=0.45, contrast_limit=0, p=1),
        A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.45, p=1),
        A.ColorJitter(brightness=0, contrast=0, saturation=0.9, hue=0, p=1),
        A.Sharpen(alpha=(0.05, 0.95), lightness=(1, 1), p=1),
        A.Affine(rotate=(-30, 30), **grey),
        A.Affine(shear={"x": (-17, 17), "y": (0, 0)}, **grey),  # FixMatch's 0.3 shear
        A.Affine(shear={"x": (0, 0), "y": (-17, 17)}, **grey),
        A.Affine(translate_percent={"x": (-0.3, 0.3), "y": (0, 0)}, **grey),
        A.Affine(translate_percent={"x": (0, 0), "y": (-0.3, 0.3)}, **grey),
    ]
    cutout = A.CoarseDropout(
        num_holes_range=(1, 1),
        hole_height_range=(0.05, 0.5),
        hole_width_range=(0.05, 0.5),
        fill=127,
        p=1,
    )
    weak = weak_transform(image_size).transforms[:-1]  # without its ToTensorV2
    return A.Compose([*weak, A.SomeOf(pool, n=num_ops, p=1), cutout, ToTensorV2()])


def eval_transform(image_size: int) -> A.Compose:
    """Evaluation/prediction pipeline: resize to the model's input size."""
    return A.Compose([A.Resize(image_size, image_size, area_for_downscale="image"), ToTensorV2()])


def check_augment(options: Mapping[str, object], key: str = "data.augment") -> None:
    """Refuse augmentation options :func:`train_transform` cannot use, naming ``key``."""
    known = [n for n in inspect.signature(train_transform).parameters if n != "image_size"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{key}: unknown option(s) {unknown}; valid: {', '.join(known)}")

    def number(name: str, low: float, high: float) -> None:
        value = options.get(name)
        if value is None:
            return
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not low <= value <= high:
            raise ConfigError(f"{key}.{name}={value!r}: must be a number in [{low}, {high}]")

    number("rotate", 0, 180)
    number("translate", 0, 0.5)
    number("color", 0, 1)
    number("dropout", 0, 1)
    scale = options.get("crop_scale")
    if scale is not None and not (
        isinstance(scale, Sequence)
        and len(scale) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
        and 0 < scale[0] <= scale[1] <= 1
    ):
        raise ConfigError(
            f"{key}.crop_scale={scale!r}: must be [low, high] with 0 < low <= high <= 1"
        )
