"""The Hugging Face transformers reproductions of issue 17: models written without torch.fx in mind (TensorFlow
padding from the input's size, bool arguments, loops over inputs) and DETR's frozen BN give their pairs, and Tune
mode computes what Eval mode computes, in float64, gradients included. Random weights from small configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tune
from tests.tune.helpers import assert_matches_eval, randomize_bn

transformers = pytest.importorskip("transformers")


def _bns(model: nn.Module) -> int:
    return sum(tune.is_bn_like(m) for m in model.modules())


@pytest.mark.parametrize(("config", "pairs"), [
    (transformers.MobileNetV1Config(), 27),  # tf_padding=True: padding computed from the input's size
    (transformers.MobileNetV2Config(), 52),  # the same with int() of the sizes
])
def test_mobilenets_with_tensorflow_padding_give_every_pair(config, pairs):
    report = tune.find_pairs(transformers.AutoModel.from_config(config))
    assert len(report.pairs) == pairs and report.skipped == []


class Logits(nn.Module):
    """A transformers classifier returning its logits tensor (the Eval comparison takes tensors)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


@pytest.mark.parametrize("size", [33, 32])
def test_mobilenet_v2_tuned_matches_eval_at_odd_and_even_sizes(size):
    config = transformers.MobileNetV2Config(depth_multiplier=0.35, num_labels=3)
    model = randomize_bn(Logits(transformers.MobileNetV2ForImageClassification(config))).eval().double()
    x = torch.randn(2, 3, size, size + 1, dtype=torch.float64)
    report = assert_matches_eval(model, x, rtol=1e-9, steps=0)
    assert len(report.pairs) == _bns(model)


def test_efficientnet_top_conv_and_segformer_head_are_found():
    efficientnet = transformers.EfficientNetModel(transformers.EfficientNetConfig(
        width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320))
    pairs = tune.find_pairs(efficientnet).pairs
    assert ("encoder.top_conv", "encoder.top_bn") in pairs and len(pairs) == _bns(efficientnet)
    segformer = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(
        hidden_sizes=[8, 16, 24, 32], decoder_hidden_size=16, depths=[1, 1, 1, 1]))
    assert tune.find_pairs(segformer).pairs == [("decode_head.linear_fuse", "decode_head.batch_norm")]


def test_detr_frozen_bn_is_folded_exactly():
    from transformers.models.detr.modeling_detr import DetrFrozenBatchNorm2d

    model = nn.Sequential(nn.Conv2d(3, 8, 3), DetrFrozenBatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1),
                          DetrFrozenBatchNorm2d(4))
    generator = torch.Generator().manual_seed(0)
    for bn in (model[1], model[4]):
        for buffer in (bn.weight, bn.bias, bn.running_mean):
            buffer.copy_(torch.randn(buffer.shape, generator=generator))
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) + 0.1)
    report = assert_matches_eval(model.double(), torch.randn(2, 3, 9, 9, dtype=torch.float64), rtol=1e-9)
    assert report.pairs == [("0", "1"), ("3", "4")] and report.skipped == []
