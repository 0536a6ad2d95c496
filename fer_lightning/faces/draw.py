"""Pictures of what the detector saw: boxes, five landmarks and a label per face."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# RGB per landmark (eyes, nose, mouth corners): a swapped pair shows at a glance
LANDMARK_COLOURS = ((0, 200, 255), (0, 90, 255), (255, 220, 0), (255, 60, 200), (200, 0, 120))
BOX_COLOUR = (40, 255, 40)


def draw_faces(
    rgb: np.ndarray,
    boxes: Sequence[Sequence[float]],
    landmarks: Sequence[np.ndarray | None],
    labels: Sequence[str],
) -> np.ndarray:
    """A copy of ``rgb`` with each face's box (x, y, w, h), landmarks [5, 2] and label drawn.

    Line widths and text grow with the image, so a drawing reads the same at any size.
    """
    out = np.ascontiguousarray(rgb).copy()
    unit = max(1, round(max(rgb.shape[:2]) / 400))
    for box, points, label in zip(boxes, landmarks, labels, strict=True):
        x, y, w, h = (round(float(v)) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), BOX_COLOUR, unit, cv2.LINE_AA)
        if points is not None:
            for (px, py), colour in zip(points, LANDMARK_COLOURS, strict=True):
                cv2.circle(out, (round(px), round(py)), 2 * unit, colour, -1, cv2.LINE_AA)
        scale = 0.45 * unit
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, unit)
        top = y - th - base - 2 if y - th - base - 2 >= 0 else y + h  # above the box, or below
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 2), BOX_COLOUR, -1)
        origin = (x + 2, top + th + 1)
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(out, label, origin, font, scale, (0, 0, 0), unit, cv2.LINE_AA)
    return out
