"""The engine's parts on their own: data streams, gradient reversal, CDAN's conditioning, schedules, backbones."""

from __future__ import annotations

import argparse
import itertools
import math
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from experiments.cdan import CDAN
from experiments.data import StreamSampler
from experiments.engine import lr_lambda
from experiments.models import Classifier, build_backbone
from experiments.modules import DomainAdversary, WarmStartGradientReversal
from experiments.utils import ExperimentError


def take(sampler: StreamSampler, n: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), n))


def test_stream_is_split_across_ranks_and_resumable():
    whole = take(StreamSampler(10, (0, 0)), 40)  # four passes over ten samples
    for lap in range(4):
        assert sorted(index for index, _ in whole[10 * lap : 10 * lap + 10]) == list(range(10))
    assert [index for index, _ in whole[:10]] != [index for index, _ in whole[10:20]]  # a new order per pass
    ranks = [take(StreamSampler(10, (0, 0), rank=rank, world_size=2), 20) for rank in range(2)]
    assert [item for pair in zip(*ranks, strict=True) for item in pair] == whole
    assert take(StreamSampler(10, (0, 0), start=13), 27) == whole[13:]
    assert take(StreamSampler(10, (1, 0)), 40) != whole


def test_gradient_reversal_warms_up_and_keeps_its_step_in_the_state_dict():
    grl = WarmStartGradientReversal()
    x = torch.ones(3, requires_grad=True)
    grl(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(3))  # lambda_0 = 0
    grl.step = 1000
    x.grad = None
    grl(x).sum().backward()
    assert x.grad == pytest.approx([-(2 / (1 + math.exp(-1)) - 1)] * 3)  # -0.462
    restored = WarmStartGradientReversal()
    restored.load_state_dict(grl.state_dict())
    assert restored.step == 1001
    grl.eval()
    grl(x)
    assert grl.step == 1001  # only training steps count


def test_domain_adversary_labels_the_first_half_source():
    adversary = DomainAdversary(4)
    features = torch.randn(6, 4)
    loss, accuracy = adversary(features)
    logits = adversary.discriminator(features).squeeze(1)
    expected = nn.functional.binary_cross_entropy(torch.sigmoid(logits), torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0 <= accuracy.item() <= 100


@pytest.mark.parametrize("randomized", [False, True])
def test_cdan_conditions_features_on_predictions(randomized):
    args = argparse.Namespace(trade_off=1.0, randomized=randomized, randomized_dim=32, entropy=True)
    cdan = CDAN(Classifier(nn.Flatten(), 12, num_classes=5, bottleneck_dim=8), args)
    features, predictions = torch.randn(4, 8), torch.softmax(torch.randn(4, 5), 1)
    mapped = cdan.conditioned(features, predictions)
    if randomized:
        assert mapped.shape == (4, 32)
        assert "r_f" in cdan.state_dict()  # fixed, so checkpoints keep the same projection
    else:
        assert mapped.shape == (4, 40)
        assert torch.allclose(mapped[1].view(5, 8), torch.outer(predictions[1], features[1]))
    loss, figures = cdan(torch.randn(2, 12), torch.tensor([0, 3]), torch.randn(2, 12))
    assert loss.item() == pytest.approx((figures["cls_loss"] + figures["transfer_loss"]).item())


def test_learning_rate_schedules():
    inverse = lr_lambda(argparse.Namespace(lr_decay_epochs=None, lr_gamma=0.001, lr_decay=0.75, iters_per_epoch=5))
    assert inverse(0) == 1 and inverse(1000) == pytest.approx(2**-0.75)
    step = lr_lambda(argparse.Namespace(lr_decay_epochs=[2, 4], lr_gamma=0.1, lr_decay=0.75, iters_per_epoch=5))
    assert [step(i) for i in (0, 9, 10, 19, 20)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


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
