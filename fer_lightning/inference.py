"""Prediction on image files: checkpoint loading, input discovery, face cropping, CSV rows.

Plain functions, so ``fer-predict`` stays a thin Hydra wrapper and everything here is
testable without Hydra. Image size and normalisation always come from the checkpoint,
so a model is fed exactly as it was trained.
"""

from __future__ import annotations

import csv
import functools
import glob
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fer_lightning.data.images import IMAGE_EXTENSIONS, read_rgb
from fer_lightning.data.transforms import eval_transform
from fer_lightning.emotions import EMOTIONS, PROB_COLUMNS
from fer_lightning.errors import DataError
from fer_lightning.io import atomic_path
from fer_lightning.models.classifier import FERClassifier

log = logging.getLogger(__name__)

BOX_COLUMNS = ("face", "x", "y", "w", "h")
# per-row outcome: predicted, image without a detected face, file that cannot be decoded
STATUS_OK, STATUS_NO_FACE, STATUS_UNREADABLE = "ok", "no_face", "unreadable"
HAAR_FRONTAL_FACE = "haarcascade_frontalface_default.xml"


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def collect_inputs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expand files, folders (recursively, image extensions only) and glob patterns.

    Explicitly named files and glob matches are kept whatever their extension, so a
    broken file the user asked for is reported rather than silently dropped.
    """
    specs = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    found: list[Path] = []
    for spec in map(str, specs):
        path = Path(spec).expanduser()
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
        elif path.is_file():
            found.append(path)
        elif any(c in spec for c in "*?["):
            found += sorted(
                Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()
            )
        else:
            raise FileNotFoundError(f"inputs={spec}: no such file or folder")
    found = list(dict.fromkeys(found))  # a file named twice is predicted once
    if not found:
        raise ValueError(f"inputs={inputs}: no images found")
    return found


@functools.cache
def _haar_cascade() -> cv2.CascadeClassifier:
    """The frontal-face cascade, loaded once per process (DataLoader workers included)."""
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them from the "
            "main wheel); install opencv-python-headless<5 for detect_faces=true"
        )
    path = Path(cv2.data.haarcascades) / HAAR_FRONTAL_FACE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}")
    return cascade


@dataclass(frozen=True)
class FaceDetector:
    """OpenCV's frontal-face Haar cascade, shipped inside the opencv-python wheel (no download).

    The defaults are OpenCV's usual ones; they also fire on the synthetic faces (tested).
    """

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 30

    def detect(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes ``(x, y, w, h)``, sorted left to right."""
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes = _haar_cascade().detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return sorted(tuple(int(v) for v in box) for box in boxes)


def crop_face(rgb: np.ndarray, box: Sequence[int], margin: float) -> np.ndarray:
    """A square crop centred on ``box``, ``margin`` of its side added on every side.

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


class _ImageItems(Dataset):
    """One item per file: the file's rows (without predictions) and their input tensors.

    Decoding and detection happen here so ``num_workers`` parallelises them.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        transform: Any,
        detector: FaceDetector | None,
        face_margin: float,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.detector = detector
        self.face_margin = face_margin

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> list[tuple[dict[str, Any], torch.Tensor | None]]:
        path = self.paths[i]
        try:
            rgb = read_rgb(path)
        except DataError:
            return [({"path": path, "status": STATUS_UNREADABLE}, None)]
        if self.detector is None:
            return [({"path": path, "status": STATUS_OK}, self.transform(image=rgb)["image"])]
        boxes = self.detector.detect(rgb)
        if not boxes:
            return [({"path": path, "face": 0, "status": STATUS_NO_FACE}, None)]
        items = []
        for k, (x, y, w, h) in enumerate(boxes, start=1):
            row = {"path": path, "face": k, "x": x, "y": y, "w": w, "h": h, "status": STATUS_OK}
            crop = crop_face(rgb, (x, y, w, h), self.face_margin)
            items.append((row, self.transform(image=crop)["image"]))
        return items


def _keep(item: Any) -> Any:
    """DataLoader collate that passes an item through (rows hold strings and None)."""
    return item


def _batches(
    items: Iterator[list[tuple[dict[str, Any], torch.Tensor | None]]], batch_size: int
) -> Iterator[tuple[list[dict[str, Any]], list[torch.Tensor]]]:
    """Regroup per-file rows into model batches; rows without an input ride along."""
    rows: list[dict[str, Any]] = []
    tensors: list[torch.Tensor] = []
    for item in items:
        for row, tensor in item:
            rows.append(row)
            if tensor is not None:
                tensors.append(tensor)
            if len(tensors) == batch_size:
                yield rows, tensors
                rows, tensors = [], []
    if rows:
        yield rows, tensors


def predict_files(
    model: FERClassifier,
    paths: Sequence[Path],
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    detector: FaceDetector | None = None,
    face_margin: float = 0.2,
) -> list[dict[str, Any]]:
    """One row per image (or per detected face) with the emotion, confidence and probabilities.

    Unreadable files get a row with status ``unreadable`` and a warning; they never
    stop the batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    model = model.to(device).eval()
    image_size = model.hparams.image_size
    if not image_size:
        raise ValueError("the checkpoint records no training image size (hparams.image_size)")
    transform = eval_transform(image_size)
    loader = DataLoader(
        _ImageItems(paths, transform, detector, face_margin),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_keep,
    )
    out: list[dict[str, Any]] = []
    for rows, tensors in _batches(iter(loader), batch_size):
        probs = iter(())
        if tensors:
            probs = iter(model.predict_probs(torch.stack(tensors).to(device)).cpu().numpy())
        for row in rows:
            if row["status"] == STATUS_UNREADABLE:
                log.warning("skipping %s: missing or corrupt image", row["path"])
            if row["status"] != STATUS_OK:
                out.append(row)
                continue
            p = next(probs)
            best = int(p.argmax())
            row |= {"emotion": EMOTIONS[best], "confidence": float(p[best])}
            row |= dict(zip(PROB_COLUMNS, map(float, p), strict=True))
            out.append(row)
    return out


def write_predictions(rows: Sequence[dict[str, Any]], output: str | Path, faces: bool) -> Path:
    """Write the rows as CSV atomically; box columns only when faces were detected."""
    columns = ["path", *(BOX_COLUMNS if faces else ()), "status", "emotion", "confidence"]
    columns += PROB_COLUMNS
    output = Path(output)
    with atomic_path(output) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})
    return output


def summarize(rows: Sequence[dict[str, Any]]) -> str:
    """Counts per predicted emotion, then the files without a face or not readable."""
    counts = Counter(row["emotion"] for row in rows if row["status"] == STATUS_OK)
    files = len({row["path"] for row in rows})
    lines = [f"{counts.total()} predictions from {files} files"]
    lines += [f"  {name:<10} {counts[name]:>6}" for name in EMOTIONS]
    for status, what in ((STATUS_NO_FACE, "no face found"), (STATUS_UNREADABLE, "unreadable")):
        bad = [row["path"] for row in rows if row["status"] == status]
        if bad:
            shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
            lines.append(f"{what}: {len(bad)} ({shown})")
    return "\n".join(lines)
