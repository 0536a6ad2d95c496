"""Synthetic photographs: drawn faces pasted into larger cluttered scenes, with their truth.

Face detectors and alignment need what real photos have and the aligned data set lacks:
faces that are small, rotated and anywhere in the frame, among things that are not faces.
Each pasted face keeps its five landmarks (see ``render_face_with_landmarks``) mapped
through the same similarity transform as its pixels, so detections and alignments can be
scored against exact positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fer_lightning.data.synthetic_faces import render_face_with_landmarks
from fer_lightning.emotions import NUM_CLASSES

# the drawn head (face, hair, neck) inside a render, as an ellipse in units of its side
_HEAD_CENTRE, _HEAD_AXES = (0.5, 0.5), (0.44, 0.5)
_MAX_PLACEMENT_TRIES = 50


@dataclass(frozen=True)
class PastedFace:
    """Where one face went: its box (x, y, w, h, the drawn face's extent) and landmarks [5, 2]."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    label: int


def _scene(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth colour field with clutter (boxes, discs, bars): edges that are not faces."""
    cells = rng.integers(40, 220, (4, 5, 3)).astype(np.uint8)
    img = cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(4, 12))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = rng.random()
        if kind < 0.4:
            w, h = (int(v) for v in rng.integers(20, 200, 2))
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1, cv2.LINE_AA)
        elif kind < 0.7:
            axes = tuple(int(v) for v in rng.integers(8, 80, 2))
            cv2.ellipse(img, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(img, (x, y), end, colour, int(rng.integers(2, 10)), cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    grain = rng.normal(0.0, 5.0, img.shape)
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def _overlaps(box: tuple[float, ...], boxes: list[tuple[float, ...]]) -> bool:
    x, y, w, h = box
    return any(
        x < bx + bw and bx < x + w and y < by + bh and by < y + h for bx, by, bw, bh in boxes
    )


def render_photo(
    rng: np.random.Generator,
    width: int = 640,
    height: int = 480,
    faces: tuple[int, int] = (0, 3),
    face_size: tuple[int, int] = (60, 200),
    max_angle: float = 25.0,
) -> tuple[np.ndarray, list[PastedFace]]:
    """A ``height`` x ``width`` RGB scene with ``faces[0]..faces[1]`` non-overlapping faces.

    Each face is drawn ``face_size`` pixels square (uniform in that range), rotated by up
    to ``max_angle`` degrees and placed anywhere it fits whole; a feathered elliptical
    mask blends the head into the scene. Faces are listed left to right; a face that
    finds no free place after a few tries is left out.
    """
    img = _scene(rng, width, height).astype(np.float32)
    placed: list[PastedFace] = []
    footprints: list[tuple[float, ...]] = []
    for _ in range(int(rng.integers(faces[0], faces[1] + 1))):
        label = int(rng.integers(0, NUM_CLASSES))
        side = int(rng.integers(face_size[0], face_size[1] + 1))
        face, landmarks = render_face_with_landmarks(rng, label, float(rng.uniform(0.3, 1)), side)
        angle = float(rng.uniform(-max_angle, max_angle))
        for _ in range(_MAX_PLACEMENT_TRIES):
            x = float(rng.uniform(0, width - side))
            y = float(rng.uniform(0, height - side))
            if not _overlaps((x, y, side, side), footprints):
                break
        else:
            continue  # the scene is full
        centre = ((side - 1) / 2,) * 2  # pixel-centre coordinates, as warpAffine uses
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        m[:, 2] += (x, y)
        mask = np.zeros((side, side), np.float32)
        head = tuple(round(c * side) for c in _HEAD_CENTRE)
        axes = tuple(round(a * side) for a in _HEAD_AXES)
        cv2.ellipse(mask, head, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.03 * side)
        size = (width, height)
        warped = cv2.warpAffine(face, m, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, m, size, flags=cv2.INTER_LINEAR)[..., None]
        img = img * (1 - alpha) + warped.astype(np.float32) * alpha
        points = landmarks @ m[:, :2].T + m[:, 2]
        footprints.append((x, y, side, side))
        placed.append(PastedFace(_face_box(points, side), points.astype(np.float32), label))
    placed.sort(key=lambda p: p.box[0])
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), placed


def _face_box(landmarks: np.ndarray, side: int) -> tuple[float, float, float, float]:
    """The drawn face's extent (brows to chin, cheek to cheek) from its landmarks' centre.

    In a render the face spans about 0.7 x 0.9 of the side, centred 0.05 above the
    landmarks' mean.
    """
    cx, cy = landmarks.mean(axis=0)
    w, h = 0.7 * side, 0.9 * side
    return (float(cx - w / 2), float(cy - 0.05 * side - h / 2), w, h)
