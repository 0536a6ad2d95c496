"""Face detectors behind one interface: RGB images in, the faces found in each out.

MTCNN (facenet-pytorch) is the default: boxes, a score and the five landmarks that
alignment needs, batched, on the GPU when there is one. Its P/R/O-Net weights (~2 MB)
ship inside the wheel, so nothing is downloaded. OpenCV's Haar cascade is the fallback
that needs nothing beyond OpenCV: frontal faces only, boxes only.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import cv2
import numpy as np
import torch

from fer_lightning.errors import ConfigError
from fer_lightning.hardware import resolve_device

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

# The five-point convention of MTCNN and of RAF-DB's alignment; left/right as seen in the image.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
HAAR_FRONTAL_FACE = "haarcascade_frontalface_default.xml"
# MTCNN holds a batch as float32 (and its first pyramid level): fewer large photos per call
BATCH_PIXELS = 16 * 640 * 480


@dataclass(frozen=True)
class Face:
    """One detected face: box ``(x, y, w, h)`` in pixels, the detector's score, landmarks.

    ``landmarks`` is float32 ``[5, 2]`` (x, y) in ``LANDMARK_NAMES`` order, or None for a
    detector that finds none; ``score`` is None for one that gives none.
    """

    box: tuple[float, float, float, float]
    score: float | None = None
    landmarks: np.ndarray | None = None


class FaceDetector(Protocol):
    """What ``predict_files`` needs from a detector."""

    gives_landmarks: ClassVar[bool]
    batch_size: int  # images per ``detect`` call that the detector can use at once

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """The faces of each HxWx3 uint8 RGB image, left to right."""
        ...


@dataclass(frozen=True)
class MTCNNDetector:
    """facenet-pytorch's MTCNN: boxes, probabilities and five landmarks, batched.

    Images of equal size are detected together, ``batch_size`` at a time (MTCNN stacks a
    batch into one tensor), fewer when they are larger than 640 x 480 so a batch of
    phone photos stays within memory. ``min_face_size sets the smallest face searched for and
    reported (box side, pixels); faces scoring below ``min_score`` are dropped.
    ``thresholds`` and ``factor`` are MTCNN's own (per-stage score thresholds, pyramid
    scale step); the defaults are the original paper's.
    """

    min_face_size: int = 20
    min_score: float = 0.9
    thresholds: Sequence[float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    batch_size: int = 16
    device: str = "auto"

    gives_landmarks: ClassVar[bool] = True

    def __post_init__(self) -> None:
        problems = []
        if self.min_face_size < 12:
            problems.append(f"min_face_size={self.min_face_size} (MTCNN sees faces >= 12 px)")
        if not 0.0 <= self.min_score <= 1.0:
            problems.append(f"min_score={self.min_score} (a probability, 0..1)")
        if len(self.thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            problems.append(f"thresholds={list(self.thresholds)} (three probabilities)")
        if not 0.0 < self.factor < 1.0:
            problems.append(f"factor={self.factor} (the pyramid's scale step, 0..1)")
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} (>= 1)")
        if problems:
            raise ConfigError("detector (mtcnn): invalid " + "; ".join(problems))

    @functools.cached_property
    def _net(self) -> MTCNN:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as e:
            raise RuntimeError(
                "detector=mtcnn needs facenet-pytorch (pip install 'facenet-pytorch>=2.5.3,<2.6'"
                "); or use detector=haar"
            ) from e
        net = MTCNN(
            min_face_size=self.min_face_size,
            thresholds=list(self.thresholds),
            factor=self.factor,
            keep_all=True,
            device=resolve_device(self.device),
        )
        return net.eval()

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        found: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            by_shape[image.shape].append(i)
        for (height, width, _), indices in by_shape.items():
            step = max(1, min(self.batch_size, BATCH_PIXELS // (height * width)))
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                batch = torch.from_numpy(np.stack([images[i] for i in chunk]))
                boxes, scores, points = self._net.detect(batch, landmarks=True)
                for i, b, s, p in zip(chunk, boxes, scores, points, strict=True):
                    found[i] = self._faces(b, s, p)
        return found

    def _faces(self, boxes, scores, points) -> list[Face]:
        """One image's MTCNN output (None, or corner boxes, scores, landmarks) as faces."""
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float32)
        points = np.asarray(points, dtype=np.float32)
        faces = []
        for (x0, y0, x1, y1), score, landmarks in zip(boxes, scores, points, strict=True):
            w, h = x1 - x0, y1 - y0
            if score >= self.min_score and max(w, h) >= self.min_face_size:
                box = (float(x0), float(y0), float(w), float(h))
                faces.append(Face(box, float(score), landmarks))
        return sorted(faces, key=lambda f: f.box[0])


@functools.cache
def _haar_cascade() -> cv2.CascadeClassifier:
    """The frontal-face cascade, loaded once per process."""
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them from the "
            "main wheel); install opencv-python-headless<5 for detector=haar"
        )
    path = Path(cv2.data.haarcascades) / HAAR_FRONTAL_FACE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}")
    return cascade


@dataclass(frozen=True)
class HaarDetector:
    """OpenCV's frontal-face Haar cascade, shipped inside the opencv-python wheel.

    The defaults are OpenCV's usual ones. No landmarks and no score: its faces are
    cropped, not aligned.
    """

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face_size: int = 30

    gives_landmarks: ClassVar[bool] = False
    batch_size: ClassVar[int] = 1  # one image at a time (OpenCV threads inside each call)

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        return [self._detect(image) for image in images]

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes = _haar_cascade().detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_face_size, self.min_face_size),
        )
        return [Face(box) for box in sorted(tuple(int(v) for v in box) for box in boxes)]
