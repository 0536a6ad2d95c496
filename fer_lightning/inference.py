"""Prediction on image files: checkpoint loading, input discovery, faces, CSV rows.

Plain functions, so ``fer-predict`` stays a thin Hydra wrapper and everything here is
testable without Hydra. Image size and normalisation always come from the checkpoint,
so a model is fed exactly as it was trained; faces in photos are found and aligned by
:mod:`fer_lightning.faces` first.
"""

from __future__ import annotations

import csv
import glob
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fer_lightning.data.images import IMAGE_EXTENSIONS, read_rgb
from fer_lightning.emotions import EMOTIONS, PROB_COLUMNS
from fer_lightning.errors import ConfigError, DataError
from fer_lightning.faces.align import FaceTemplate, align_face, crop_face
from fer_lightning.faces.detect import LANDMARK_NAMES, Face, FaceDetector
from fer_lightning.faces.draw import draw_faces
from fer_lightning.io import atomic_path
from fer_lightning.models.classifier import FERClassifier
from fer_lightning.resize import resize_image

log = logging.getLogger(__name__)

BOX_COLUMNS = ("face", "x", "y", "w", "h")
LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy")
# a detected face's columns: its box, the detector's score, its five landmarks
FACE_COLUMNS = (*BOX_COLUMNS, "score", *LANDMARK_COLUMNS)
# per-row outcome: predicted, image without a detected face, file that cannot be decoded
STATUS_OK, STATUS_NO_FACE, STATUS_UNREADABLE = "ok", "no_face", "unreadable"


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
            raise ConfigError(f"inputs={spec}: no such file or folder")
    found = list(dict.fromkeys(found))  # a file named twice is predicted once
    if not found:
        raise ConfigError(f"inputs={inputs}: no images found")
    return found


class _ImageFiles(Dataset):
    """One item per file: ``(path, image)``, image None when the file cannot be decoded.

    Decoding happens here so ``num_workers`` parallelises it. Without a detector the
    image is prepared for the model here too; with one, detection needs whole images.
    """

    def __init__(self, paths: Sequence[Path], prepare: Any | None) -> None:
        self.paths = [str(p) for p in paths]
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray | torch.Tensor | None]:
        path = self.paths[i]
        try:
            rgb = read_rgb(path)
        except DataError:
            return path, None
        return path, rgb if self.prepare is None else self.prepare(rgb)


def _face_row(path: str, k: int, face: Face) -> dict[str, Any]:
    """The CSV columns of one face: number, box (whole pixels), score, landmarks."""
    row: dict[str, Any] = {"path": path, "face": k}
    row |= dict(zip("xywh", (round(v) for v in face.box), strict=True))
    if face.score is not None:
        row["score"] = face.score
    if face.landmarks is not None:
        row |= dict(zip(LANDMARK_COLUMNS, map(float, face.landmarks.ravel()), strict=True))
    return row


def _file_items(
    chunks: Iterator[list[tuple[str, Any]]],
    detector: FaceDetector | None,
    prepare: Any,
    template: FaceTemplate | None,
    face_margin: float,
) -> Iterator[list[tuple[dict[str, Any], torch.Tensor | None]]]:
    """Per file: its rows (without predictions) and their input tensors.

    Each chunk of decoded images goes through the detector in one call (MTCNN batches
    it); every face is aligned onto ``template`` when it has landmarks, else cropped.
    """
    for chunk in chunks:
        readable = [image for _, image in chunk if image is not None]
        found = iter(detector.detect(readable) if detector is not None and readable else ())
        for path, image in chunk:
            if image is None:
                yield [({"path": path, "status": STATUS_UNREADABLE}, None)]
            elif detector is None:
                yield [({"path": path, "status": STATUS_OK}, image)]
            elif not (faces := next(found)):
                yield [({"path": path, "face": 0, "status": STATUS_NO_FACE}, None)]
            else:
                items = []
                for k, face in enumerate(faces, start=1):
                    if template is not None and face.landmarks is not None:
                        crop = align_face(image, face.landmarks, template)
                    else:
                        crop = crop_face(image, face.box, face_margin)
                    row = _face_row(path, k, face) | {"status": STATUS_OK}
                    items.append((row, prepare(crop)))
                yield items


def _keep(items: list[Any]) -> list[Any]:
    """DataLoader collate that passes a list of items through (they hold strings and None)."""
    return items


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
    template: FaceTemplate | None = None,
    face_margin: float = 0.2,
) -> list[dict[str, Any]]:
    """One row per image (or per detected face) with the emotion, confidence and probabilities.

    With a ``detector``, each face is aligned onto ``template`` (None: the square crop
    with ``face_margin``). Each face goes from its own size to the model's input size by
    :func:`fer_lightning.resize.resize`, the resize of training, evaluation and the ONNX
    graph, so a face gets the probabilities ``fer-eval`` and the exported model give it.
    Unreadable files get a row with status ``unreadable`` and a warning; they never
    stop the batch.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    model = model.to(device).eval()
    image_size = model.hparams.image_size
    if not image_size:
        raise ValueError("the checkpoint records no training image size (hparams.image_size)")
    prepare = partial(resize_image, size=image_size)
    if template is not None and detector is not None and not detector.gives_landmarks:
        log.warning(
            "%s gives no landmarks: its faces are square crops (face_margin), not aligned",
            type(detector).__name__,
        )
    loader = DataLoader(
        _ImageFiles(paths, prepare if detector is None else None),
        batch_size=detector.batch_size if detector is not None else batch_size,
        num_workers=num_workers,
        collate_fn=_keep,
    )
    items = _file_items(iter(loader), detector, prepare, template, face_margin)
    out: list[dict[str, Any]] = []
    for rows, tensors in _batches(items, batch_size):
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


def _cell(column: str, value: Any) -> Any:
    """CSV text of a value: landmarks to 0.1 px, other floats to 6 decimals."""
    if not isinstance(value, float):
        return value
    return f"{value:.1f}" if column in LANDMARK_COLUMNS else f"{value:.6f}"


def _header(path: Path) -> list[str]:
    """The first CSV row of ``path`` (empty when it has none or is not text)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return next(csv.reader([f.readline(65536)]), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def check_output(output: str | Path, inputs: Sequence[Path]) -> Path:
    """Refuse an ``output`` that would destroy something, before any work is done.

    The CSV may only replace a previous prediction CSV: never one of the inputs, a
    folder, or any other existing file (whose header shows what it is).
    """
    output = Path(output).expanduser()
    if output.is_dir():
        raise ConfigError(
            f"output={output} is a folder; name the CSV file, "
            f"e.g. output={output / 'predictions.csv'}"
        )
    if output.exists() or output.is_symlink():
        target = output.resolve()
        if any(target == p.resolve() for p in inputs):
            raise ConfigError(
                f"output={output} is one of the inputs: writing the CSV would replace it; "
                "choose another output file, e.g. output=predictions.csv"
            )
        header = _header(output)
        if header[:1] != ["path"] or not {"status", "emotion", *PROB_COLUMNS} <= set(header):
            raise ConfigError(
                f"output={output} exists and is not a fer-predict CSV (its first line is not "
                "a prediction header); choose another output file, or delete it first"
            )
    return output


def write_predictions(rows: Sequence[dict[str, Any]], output: str | Path, faces: bool) -> Path:
    """Write the rows as CSV atomically; face columns only when faces were detected."""
    columns = ["path", *(FACE_COLUMNS if faces else ()), "status", "emotion", "confidence"]
    columns += PROB_COLUMNS
    output = Path(output)
    with atomic_path(output) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(k, v) for k, v in row.items()})
    return output


def draw_predictions(rows: Sequence[dict[str, Any]], folder: str | Path) -> list[Path]:
    """Each photo with a face as a PNG in ``folder``: boxes, landmarks, emotions drawn.

    Files are named after their inputs (``photo.jpg`` -> ``photo.png``; a repeated name
    gets a numbered suffix). Returns the files written.
    """
    by_path: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == STATUS_OK and row.get("face"):
            by_path.setdefault(row["path"], []).append(row)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names: Counter[str] = Counter()
    for path, faces in by_path.items():
        stem = Path(path).stem
        names[stem] += 1
        out = folder / (f"{stem}.png" if names[stem] == 1 else f"{stem}_{names[stem]}.png")
        boxes = [tuple(row[k] for k in "xywh") for row in faces]
        landmarks = [
            np.array([row[c] for c in LANDMARK_COLUMNS]).reshape(-1, 2)
            if LANDMARK_COLUMNS[0] in row
            else None
            for row in faces
        ]
        labels = [f"{row['emotion']} {row['confidence']:.2f}" for row in faces]
        drawn = draw_faces(read_rgb(path), boxes, landmarks, labels)
        ok, png = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {out}")
        with atomic_path(out) as tmp:
            tmp.write_bytes(png.tobytes())
        written.append(out)
    return written


def check_readable(rows: Sequence[dict[str, Any]]) -> None:
    """At least one input must decode as an image: else the run is an error, naming them."""
    if rows and all(row["status"] == STATUS_UNREADABLE for row in rows):
        paths = list(dict.fromkeys(row["path"] for row in rows))
        shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise DataError(
            f"no input is a readable image: {shown} (missing, corrupt or not an image file; "
            f"supported: {', '.join(sorted(IMAGE_EXTENSIONS))}); give image files or folders "
            "as inputs="
        )


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
