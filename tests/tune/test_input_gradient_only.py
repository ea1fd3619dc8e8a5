"""A frozen model differentiated for its input alone (adversarial examples): Tune mode computes that gradient,
exactly as Eval mode does, and no weight gradient nobody asked for."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import tune

aten = torch.ops.aten


class ConvBackwardMasks(TorchDispatchMode):
    """Records the output mask of every convolution_backward call: which of input, weight, bias it computes."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: list[list[bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is aten.convolution_backward.default:
            self.masks.append(list(args[-1]))
        return func(*args, **(kwargs or {}))


def frozen_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, bias=False),
                          nn.BatchNorm2d(4)).double()
    for bn in (model[1], model[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
    return model.eval().requires_grad_(False)


@pytest.mark.parametrize("strategy", tune.STRATEGIES)
def test_frozen_model_gets_evals_input_gradient_and_no_weight_gradient(strategy):
    model = frozen_model()
    tuned = copy.deepcopy(model)
    assert len(tune.turn_on(tuned, strategy=strategy).pairs) == 2
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    grads = []
    for m in (model, tuned):
        x_m = x.clone().requires_grad_()
        with ConvBackwardMasks() as recorded:
            m(x_m).square().sum().backward()
        grads.append(x_m.grad)
        assert recorded.masks and all(not weight and not bias for _, weight, bias in recorded.masks)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=0)
    assert all(p.grad is None for p in tuned.parameters())
