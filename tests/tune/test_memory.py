"""Exact byte counts of what autograd keeps for backward: the counter itself, and Tune mode against Eval and Deploy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import tune
from tests.tune.helpers import kept_bytes, randomize_bn


def test_counter_counts_a_known_saved_tensor_exactly_and_once():
    x = torch.randn(100, requires_grad=True)
    with tune.kept_for_backward() as kept:
        y = x.exp()  # saves its result
        z = y * 2  # saves nothing: the factor is a constant
    assert kept.nbytes == 100 * 4
    with tune.kept_for_backward() as kept:
        y = x.exp()
        w = y.sin() + y.cos()  # both save y: counted once
    assert kept.nbytes == 100 * 4
    del z, w


def test_counter_excludes_parameters_and_buffers_of_the_given_module():
    layer = nn.Linear(10, 20)
    x = torch.randn(3, 10, requires_grad=True)
    with tune.kept_for_backward(exclude=layer) as kept:
        layer(x)
    assert kept.nbytes == x.nbytes
    with tune.kept_for_backward() as kept_all:
        layer(x)
    assert kept_all.nbytes == x.nbytes + layer.weight.nbytes


def test_tune_keeps_only_the_conv_input_like_deploy_while_eval_also_keeps_the_conv_output(strategy):
    model = randomize_bn(nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8))).eval()
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    conv_output_bytes = 2 * 8 * 16 * 16 * 4
    eval_bytes = kept_bytes(model, x)
    tuned, deployed = copy.deepcopy(model), copy.deepcopy(model)
    tune.turn_on(tuned, strategy=strategy)
    tune.turn_on(deployed, mode="deploy")
    assert kept_bytes(deployed, x) == x.nbytes
    assert kept_bytes(tuned, x) == x.nbytes
    assert eval_bytes == x.nbytes + conv_output_bytes


def test_tune_keeps_nothing_weight_sized_for_frozen_bn_linear_and_transposed_convs(strategy):
    pytest.importorskip("torchvision")
    from torchvision.ops import FrozenBatchNorm2d

    for model, x in (
        (nn.Sequential(nn.Conv2d(4, 64, 3), FrozenBatchNorm2d(64)), torch.randn(1, 4, 5, 5)),
        (nn.Sequential(nn.Linear(16, 256), nn.BatchNorm1d(256)), torch.randn(2, 16)),
        (nn.Sequential(nn.ConvTranspose2d(4, 64, 3, groups=2), nn.BatchNorm2d(64)), torch.randn(1, 4, 5, 5)),
    ):
        model = randomize_bn(model).eval()
        tune.turn_on(model, strategy=strategy)
        assert kept_bytes(model, x.requires_grad_()) == x.nbytes
