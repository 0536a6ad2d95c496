"""Backbone creation and local weights loading (no hub access)."""

from __future__ import annotations

import logging

import pytest
import timm
import torch

from fer_lightning.models.backbones import backbone_mean_std, create_backbone

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
    assert "head dropped: 2 keys" in caplog.text


def test_wrapped_checkpoint_with_prefix_loads(tmp_path):
    source = _imagenet_model()
    path = tmp_path / "ckpt.pth"
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, path)
    model = create_backbone(NAME, num_classes=7, weights=str(path))
    key = "conv_stem.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])


def test_weights_of_another_model_fail_clearly(tmp_path):
    other = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    path = tmp_path / "resnet.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match="backbone tensors match mobilenetv1_100; is it another"):
        create_backbone(NAME, num_classes=7, weights=str(path))


def test_missing_weights_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.weights=.*nope.pth"):
        create_backbone(NAME, num_classes=7, weights=str(tmp_path / "nope.pth"))


def test_hub_weights_offline_give_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # read at import: patch the constant
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(RuntimeError, match="model.weights=PATH"):
        create_backbone(NAME, num_classes=7, pretrained=True)


def test_unknown_backbone_names_the_key():
    with pytest.raises(ValueError, match="model.backbone='not_a_net'"):
        create_backbone("not_a_net", num_classes=7)


def test_mean_std_follow_the_pretrained_config():
    assert backbone_mean_std("mobilenetv1_100") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert backbone_mean_std("efficientnet_b0")[0] == pytest.approx((0.485, 0.456, 0.406))
