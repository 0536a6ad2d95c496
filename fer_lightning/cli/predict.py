"""fer-predict: emotions of image files (or of the faces in photos) to a CSV."""

from __future__ import annotations

import time

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fer_lightning.cli.common import CONFIG_DIR, hydra_entry, user_errors
from fer_lightning.console import rate
from fer_lightning.faces.align import FaceTemplate
from fer_lightning.faces.detect import FaceDetector
from fer_lightning.hardware import resolve_device
from fer_lightning.inference import (
    check_output,
    check_readable,
    collect_inputs,
    draw_predictions,
    predict_files,
    summarize,
    write_predictions,
)
from fer_lightning.models.checkpoints import load_classifier


def face_pipeline(cfg: DictConfig) -> tuple[FaceDetector | None, FaceTemplate | None]:
    """The configured detector (None: detector=none) and template (None: align=false)."""
    detector = instantiate(cfg.detector, _convert_="all") if cfg.get("detector") else None
    template = FaceTemplate(**OmegaConf.to_object(cfg.face_template)) if cfg.align else None
    return detector, template


def predict_configured(
    model: torch.nn.Module,
    paths: list[str],
    cfg: DictConfig,
    device: torch.device,
    detector: FaceDetector | None,
    template: FaceTemplate | None,
) -> list[dict]:
    """:func:`predict_files` with fer-predict's settings (also what its benchmark times)."""
    return predict_files(
        model,
        paths,
        batch_size=cfg.batch_size,
        device=device,
        num_workers=cfg.num_workers,
        detector=detector,
        template=template,
        face_margin=cfg.face_margin,
    )


def predict(cfg: DictConfig) -> list[dict]:
    """Load the checkpoint, predict every input, write the CSV and print a summary."""
    inputs = cfg.inputs
    paths = collect_inputs(OmegaConf.to_object(inputs) if OmegaConf.is_config(inputs) else inputs)
    output = check_output(cfg.output, paths)
    model = load_classifier(cfg.ckpt_path)
    device = resolve_device(cfg.device)
    detector, template = face_pipeline(cfg)
    start = time.perf_counter()
    rows = predict_configured(model, paths, cfg, device, detector, template)
    seconds = time.perf_counter() - start
    check_readable(rows)
    output = write_predictions(rows, output, faces=detector is not None)
    print(summarize(rows))
    print(
        f"wrote {output} ({len(paths)} files in {seconds:.2f} s, "
        f"{rate(len(paths), seconds)} img/s on {device}, "
        f"{model.hparams.image_size}px {model.hparams.backbone})"
    )
    if cfg.draw:
        drawn = draw_predictions(rows, cfg.draw_dir)
        print(f"drew the faces of {len(drawn)} images in {cfg.draw_dir}")
    return rows


@hydra_entry
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors("fer-predict"):
        predict(cfg)


if __name__ == "__main__":
    main()
