"""GPU defaults: they compose and run on CPU, fall back with a warning, and change nothing there."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from fer_lightning import hardware
from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.errors import ConfigError
from fer_lightning.hardware import auto_workers, mixed_precision, usable_cpus
from fer_lightning.models.classifier import FERClassifier
from tests.helpers.checkpoints import fit_and_save
from tests.helpers.cli import raf_args, train

SAME = ["pseudo_label=none", "trainer.max_epochs=2", "trainer.deterministic=true"]
FALLBACK = "mixed precision falls back to 32-true"


def test_gpu_trainer_composes_with_its_speed_settings():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.benchmark is True
    expected = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        expected = "16-mixed"
    assert cfg.trainer.precision == expected
    assert cfg.data.num_workers == "auto" and cfg.data.persistent_workers is True
    assert cfg.model.channels_last is True and cfg.model.compile is False


def test_gpu_defaults_run_on_cpu_with_a_warning_and_the_same_results(tmp_path, raf):
    same = [*raf_args(raf), *SAME]
    cpu = train(tmp_path / "cpu", *same, "trainer=cpu")
    hardware._warn.cache_clear()  # warned once per process: maybe already in this one
    gpu = train(tmp_path / "gpu", *same, "trainer=gpu", "trainer.accelerator=cpu")
    assert FALLBACK in gpu.output
    assert FALLBACK not in cpu.output
    config = (tmp_path / "gpu/run/.hydra/config.yaml").read_text()
    assert "precision: ${fer.mixed_precision:${.accelerator}}" in config  # resolved per machine
    a, b = (
        json.loads((tmp_path / d / "run/round_0/metrics.json").read_text()) for d in ("cpu", "gpu")
    )
    for key, value in a.items():
        if key.startswith("test/"):
            assert b[key] == value, key


def test_mixed_precision_falls_back_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert mixed_precision("gpu") == "32-true"
    assert mixed_precision("cpu") == "32-true"


def test_auto_workers_are_sized_to_the_cores():
    cpus = usable_cpus()
    assert auto_workers(on_gpu=True) == max(1, min(8, cpus - 1))
    assert auto_workers(on_gpu=True, processes=cpus) == 1  # at least one per GPU process
    assert auto_workers(on_gpu=False) == 0  # CPU: the model's threads hold every core
    dm = FERDataModule(source=dict, root=".", num_workers="auto")
    assert dm.workers() == auto_workers(on_gpu=False)
    with pytest.raises(ConfigError, match="data.num_workers must be 'auto' or an int"):
        FERDataModule(source=dict, root=".", num_workers="many")


def test_channels_last_only_on_cuda_and_compile_keeps_checkpoint_keys(tmp_path):
    model = FERClassifier(drop_rate=0.0, scheduler=None, compile={"backend": "eager"})
    keys = set(model.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.nn.functional.one_hot(torch.arange(8) % 7, 7).float()
    path = fit_and_save(model, tmp_path / "compiled.ckpt", (x, y, torch.ones(8)))
    assert model.net._compiled_call_impl is not None  # the backbone ran compiled
    assert set(model.state_dict()) == keys  # checkpoints load into uncompiled models
    assert set(torch.load(path, map_location="cpu", weights_only=False)["state_dict"]) == keys
    stem = model.net.conv_stem.weight
    assert stem.is_contiguous() and not stem.is_contiguous(memory_format=torch.channels_last)
