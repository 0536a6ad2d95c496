"""fer-predict: emotions of image files (or of the faces in photos) to a CSV."""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig, OmegaConf

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.inference import (
    FaceDetector,
    collect_inputs,
    predict_files,
    resolve_device,
    summarize,
    write_predictions,
)
from fer_lightning.models.checkpoints import load_classifier


def predict(cfg: DictConfig) -> list[dict]:
    """Load the checkpoint, predict every input, write the CSV and print a summary."""
    inputs = cfg.inputs
    paths = collect_inputs(OmegaConf.to_object(inputs) if OmegaConf.is_config(inputs) else inputs)
    model = load_classifier(cfg.ckpt_path)
    device = resolve_device(cfg.device)
    detector = FaceDetector(**cfg.detector) if cfg.detect_faces else None
    start = time.perf_counter()
    rows = predict_files(
        model,
        paths,
        batch_size=cfg.batch_size,
        device=device,
        num_workers=cfg.num_workers,
        detector=detector,
        face_margin=cfg.face_margin,
    )
    seconds = time.perf_counter() - start
    output = write_predictions(rows, cfg.output, faces=detector is not None)
    print(summarize(rows))
    print(
        f"wrote {output} ({len(paths)} files in {seconds:.2f} s, "
        f"{len(paths) / max(seconds, 1e-9):.0f} img/s on {device}, "
        f"{model.hparams.image_size}px {model.hparams.backbone})"
    )
    return rows


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
