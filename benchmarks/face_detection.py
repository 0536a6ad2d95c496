"""Faces in photos: fer-predict vs a bare detector + bare model, and Haar vs MTCNN side by side.

The photos are synthetic (``fer_lightning.data.photos``): 0-3 drawn faces, 60-200 px,
rotated up to 25 degrees, pasted anywhere into cluttered 640x480 scenes, saved as JPEG.

  bare         facenet-pytorch's MTCNN on the photos pre-loaded as uint8 tensors, then the
               model on the aligned faces pre-loaded as tensors: no decoding, alignment,
               resizing, rows or CSV;
  fer-predict  ``predict_configured`` + ``write_predictions`` on the files, detector and template
               built from conf/predict.yaml as ``fer-predict`` builds them.
Both run with the same batch sizes and device; each first runs untimed on a few photos;
they alternate ``--repeats`` times and the ratio is the median of the per-repeat ratios.

Then the detectors over the same pre-loaded photos: images/s, how many of the pasted
faces each finds (recall) and how many faces it reports that were not pasted.

    .venv/bin/python benchmarks/face_detection.py [--photos 100] [fer-predict overrides]
    e.g. device=cuda num_workers=4 detector.batch_size=32
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.cli.predict import face_pipeline, predict_configured
from fer_lightning.data.images import read_rgb
from fer_lightning.data.photos import PastedFace, render_photo
from fer_lightning.data.transforms import eval_transform
from fer_lightning.faces.align import align_face
from fer_lightning.faces.detect import Face
from fer_lightning.hardware import resolve_device
from fer_lightning.inference import write_predictions

from harness import alternate, compose_run, median, parser, ratio, synchronize, table, workdir

GOAL = 0.8
WARMUP_PHOTOS = 4


def write_photos(folder: Path, n: int) -> tuple[list[Path], list[list[PastedFace]]]:
    """``n`` synthetic photos as JPEG files, and the faces pasted into each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, truth = [], []
    for i in range(n):
        rgb, faces = render_photo(np.random.default_rng(i))
        path = folder / f"photo_{i:04d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
        truth.append(faces)
    return paths, truth


def predict_config(overrides: list[str], tmp: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "predict",
            overrides=[
                "ckpt_path=unused",
                "inputs=unused",
                f"output={tmp / 'pred.csv'}",
                *overrides,
            ],
        )


def score(truth: list[list[PastedFace]], found: list[list[Face]]) -> tuple[int, int]:
    """(pasted faces found, reported faces that are none of them).

    A detection finds a pasted face when the face's landmarks' centre lies inside its box
    and the box is 0.5-2.5 times as wide as the face: detectors draw boxes differently.
    """
    hits = false = 0
    for pasted, detected in zip(truth, found, strict=True):
        free = list(detected)
        for face in pasted:
            cx, cy = face.landmarks.mean(axis=0)
            width = face.box[2]

            def fits(d: Face, cx=cx, cy=cy, width=width) -> bool:
                x, y, w, h = d.box
                return x <= cx <= x + w and y <= cy <= y + h and 0.5 <= w / width <= 2.5

            matches = [d for d in free if fits(d)]
            if matches:
                best = min(matches, key=lambda d: abs(d.box[0] + d.box[2] / 2 - cx))
                free.remove(best)
                hits += 1
        false += len(free)
    return hits, false


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, sizes=False, epochs=False)
    p.add_argument("--photos", type=int, default=100, help="synthetic 640x480 photos")
    p.add_argument("--image-size", type=int, default=100, help="the model's input size")
    args = p.parse_args(argv)
    n = 8 if args.tiny else args.photos
    repeats = 1 if args.tiny else args.repeats
    size = 32 if args.tiny else args.image_size
    with workdir() as tmp_name:
        tmp = Path(tmp_name)
        paths, truth = write_photos(tmp / "photos", n)
        cfg = predict_config(args.overrides, tmp)
        device = resolve_device(cfg.device)
        detector, template = face_pipeline(cfg)
        if detector is None or not detector.gives_landmarks:
            raise SystemExit("this benchmark measures detector=mtcnn (aligned faces)")
        train_cfg = compose_run([f"data.image_size={size}"], True, tmp)
        torch.manual_seed(0)
        model = instantiate(train_cfg.model).to(device).eval()

        images = [read_rgb(str(p)) for p in paths]
        batches = torch.from_numpy(np.stack(images)).split(detector.batch_size)
        mtcnn = MTCNN(
            min_face_size=detector.min_face_size,
            thresholds=list(detector.thresholds),
            factor=detector.factor,
            keep_all=True,
            device=device,
        ).eval()
        found = detector.detect(images)  # untimed: the faces the bare model is given
        transform = eval_transform(size)
        crops = [
            transform(image=align_face(image, face.landmarks, template))["image"]
            for image, faces in zip(images, found, strict=True)
            for face in faces
        ]
        face_batches = torch.stack(crops).split(cfg.batch_size) if crops else ()

        def bare(batches=batches, face_batches=face_batches) -> float:
            start = time.perf_counter()
            for batch in batches:
                mtcnn.detect(batch, landmarks=True)
            for x in face_batches:
                model.predict_probs(x.to(device, non_blocking=True)).cpu()
            synchronize(device)
            return sum(map(len, batches)) / (time.perf_counter() - start)

        def framework(paths=paths) -> float:
            start = time.perf_counter()
            rows = predict_configured(model, paths, cfg, device, detector, template)
            write_predictions(rows, cfg.output, faces=True)
            return len(paths) / (time.perf_counter() - start)

        framework(paths[:WARMUP_PHOTOS])
        bare(batches[:1], face_batches[:1])
        rates = alternate({"bare": bare, "fer-predict": framework}, repeats)

        def detector_row(name: str) -> list[object]:
            built, _ = face_pipeline(predict_config([*args.overrides, f"detector={name}"], tmp))
            built.detect(images[:WARMUP_PHOTOS])
            start = time.perf_counter()
            detected = built.detect(images)
            rate = len(images) / (time.perf_counter() - start)
            hits, false = score(truth, detected)
            pasted = sum(map(len, truth))
            return [name, rate, f"{hits}/{pasted}", f"{hits / max(pasted, 1):.2f}", false]

        detectors = [detector_row(name) for name in ("haar", "mtcnn")]

    pasted = sum(map(len, truth))
    print(
        f"{n} synthetic 640x480 photos, {pasted} pasted faces (60-200 px, up to 25 deg); "
        f"{train_cfg.model.backbone} at {size} px on {device}; overrides: {args.overrides}"
    )
    print(f"fer-predict vs bare MTCNN + model (images/s, medians of {repeats} alternations)")
    print(
        table(
            ["size", "photos", "faces", "bare", "fer-predict"],
            [[size, n, len(crops), median(rates["bare"]), median(rates["fer-predict"])]],
        )
    )
    text = ratio(rates["fer-predict"], rates["bare"])
    value, _, spread = text.partition(" ")
    verdict = "PASS" if float(value) >= GOAL else "MISS"
    print(f"fer-predict/bare {spread or '(one run)'}: {value} (goal >= {GOAL}: {verdict})")
    print("\nDetectors on the same photos (pre-loaded; images/s, pasted faces found, false faces)")
    print(table(["detector", "images/s", "found", "recall", "false faces"], detectors))


if __name__ == "__main__":
    main()
