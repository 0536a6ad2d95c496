"""All augmentation lives here (albumentations), so another backend can replace it in one place.

Both pipelines end in uint8 CHW tensors: normalisation belongs to the model
(:meth:`FERClassifier.normalize`), which runs it batched on the device. Batches then
cross worker queues, pinned memory and the host-to-device copy at a quarter of the
float32 size, and no worker spends time on a per-image float pass (about 40 % of the
pipeline's time at 224 px, per ``benchmarks/data_pipeline.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2


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


def eval_transform(image_size: int) -> A.Compose:
    """Evaluation/prediction pipeline: resize to the model's input size."""
    return A.Compose([A.Resize(image_size, image_size, area_for_downscale="image"), ToTensorV2()])
