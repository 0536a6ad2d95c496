"""fer-export: write a checkpoint as a deployable ONNX model."""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from fer_lightning.cli.common import CONFIG_DIR, hydra_entry, user_errors
from fer_lightning.errors import ConfigError
from fer_lightning.export import export_onnx, onnx_metadata
from fer_lightning.models.checkpoints import load_classifier

FORMATS = ("onnx",)


def export(cfg: DictConfig) -> str:
    """Export the checkpoint; print where it went and how to feed it."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format} is not supported; use one of {', '.join(FORMATS)}")
    model = load_classifier(cfg.ckpt_path)
    start = time.perf_counter()
    output = export_onnx(model, cfg.output, opset=cfg.opset, tta_flip=cfg.tta_flip)
    seconds = time.perf_counter() - start
    meta = onnx_metadata(model, cfg.tta_flip)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB) in {seconds:.1f} s")
    print(
        f"input: {meta['input']}\n  image_size={meta['image_size']}\n"
        f"output: {meta['output']}: {meta['labels']}"
    )
    return str(output)


@hydra_entry
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    with user_errors("fer-export"):
        export(cfg)


if __name__ == "__main__":
    main()
