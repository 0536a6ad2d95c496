"""A detected face as the model's training data shows faces: aligned, or at least cropped.

RAF-DB's ``aligned`` images (the default training input) are faces warped by a
similarity transform (rotation, uniform scale, shift) that takes five landmarks onto a
fixed template in a 100 x 100 image. :func:`align_face` does the same with a detector's
landmarks; :func:`crop_face` is the square crop for detectors without landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer_lightning.faces.detect import LANDMARK_NAMES


@dataclass(frozen=True, eq=False)
class FaceTemplate:
    """Where aligned faces have their five landmarks: ``points`` [5, 2] in a ``size`` px square.

    ``points`` may be any nested sequence (a config list); it is stored as float64.
    """

    points: np.ndarray
    size: int = 100

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float64)
        if points.shape != (len(LANDMARK_NAMES), 2):
            raise ValueError(
                f"face_template.points: need {len(LANDMARK_NAMES)} [x, y] pairs "
                f"({', '.join(LANDMARK_NAMES)}), got shape {points.shape}"
            )
        if self.size < 8 or not ((points >= 0) & (points <= self.size)).all():
            raise ValueError(
                f"face_template: points must lie inside the {self.size} px square "
                f"(size >= 8), got {points.tolist()}"
            )
        object.__setattr__(self, "points", points)


def similarity_to(template: FaceTemplate, landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking ``landmarks`` [5, 2] onto the template (least squares).

    OpenCV's estimator is robust by design (RANSAC or LMedS); with an unbounded inlier
    threshold every point is an inlier and its Levenberg-Marquardt refinement gives the
    plain least-squares fit over all five points, as the usual aligners compute it
    (MATLAB's ``cp2tform``, scikit-image's ``SimilarityTransform``).
    """
    m, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, dtype=np.float64),
        template.points,
        method=cv2.RANSAC,
        ransacReprojThreshold=np.inf,
    )
    if m is None:  # degenerate landmarks, e.g. all in one point
        raise ValueError(f"cannot fit a similarity transform to landmarks {landmarks.tolist()}")
    return m


def align_face(rgb: np.ndarray, landmarks: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """The face warped so its landmarks sit on the template: ``size`` x ``size`` x 3 RGB.

    A face shrunk by the warp is first downscaled with area averaging (bilinear warping
    alone would alias, unlike the area-resized crops of the training pipeline); parts
    outside the photo repeat its border, as :func:`crop_face` does.
    """
    m = similarity_to(template, landmarks)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 1.0:
        rgb, m = _shrink(rgb, m, scale, template.size)
    return cv2.warpAffine(
        rgb,
        m,
        (template.size, template.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _shrink(
    rgb: np.ndarray, m: np.ndarray, scale: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``rgb`` that ``m`` maps into the output, area-downscaled by ``scale``.

    Returns that image and the transform from it (not from ``rgb``) to the output.
    """
    inverse = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    corners = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = rgb.shape[:2]
    low = np.floor(corners.min(axis=0)).astype(int) - 1
    high = np.ceil(corners.max(axis=0)).astype(int) + 2
    x0, y0 = np.clip(low, 0, (width - 1, height - 1))
    x1, y1 = np.clip(high, (x0 + 1, y0 + 1), (width, height))
    roi = rgb[y0:y1, x0:x1]
    small_w, small_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(roi, (small_w, small_h), interpolation=cv2.INTER_AREA)
    # a pixel q of ``small`` shows the photo at p = (q + 0.5) / s - 0.5 + (x0, y0)
    s = np.array([small_w / (x1 - x0), small_h / (y1 - y0)])
    a = m[:, :2]
    shifted = np.column_stack([a / s, a @ (0.5 / s - 0.5 + (x0, y0)) + m[:, 2]])
    return small, shifted


def crop_face(rgb: np.ndarray, box: Sequence[float], margin: float) -> np.ndarray:
    """A square crop centred on ``box`` (x, y, w, h), ``margin`` of its side added on every side.

    Parts outside the image are filled by replicating the border, so a face at the
    edge still yields a centred square, as the training faces were.
    """
    x, y, w, h = box
    side = round(max(w, h) * (1 + 2 * margin))
    left = round(x + w / 2 - side / 2)
    top = round(y + h / 2 - side / 2)
    height, width = rgb.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return rgb[top + pad : top + pad + side, left + pad : left + pad + side]
