"""Backbones: torchvision and timm models end in pooled features, local weights load, and missing ImageNet
weights say what to do."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from experiments.models import build_backbone
from experiments.utils import ExperimentError


def test_backbones_end_in_pooled_features():
    for arch, dim in (("resnet18", 512), ("timm:resnet18", 512), ("mobilenet_v3_small", 1024)):
        backbone, features = build_backbone(arch, scratch=True)
        assert features == dim
        assert backbone.eval()(torch.randn(2, 3, 32, 32)).shape == (2, dim)
    with pytest.raises(ExperimentError, match="unknown architecture 'resnet51'"):
        build_backbone("resnet51", scratch=True)


def test_local_weights_load_from_a_file_or_an_engine_checkpoint(tmp_path):
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "plain.pth")
    torch.save({"model": {f"classifier.backbone.{k}": v for k, v in reference.state_dict().items()}},
               tmp_path / "engine.pt")
    for name in ("plain.pth", "engine.pt"):
        backbone, _ = build_backbone("resnet18", pretrained=str(tmp_path / name))
        assert torch.equal(backbone.conv1.weight, reference.conv1.weight)
        assert isinstance(backbone.fc, nn.Identity)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "other.pth")
    with pytest.raises(ExperimentError, match="does not fit the backbone"):
        build_backbone("resnet18", pretrained=str(tmp_path / "other.pth"))


def test_unreachable_imagenet_weights_say_what_to_do(tmp_path, monkeypatch):
    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ExperimentError, match="pass --pretrained PATH .* or --scratch"):
        build_backbone("resnet18")
