"""Model code written without torch.fx in mind, and other libraries' frozen BatchNorm: every case below is found
(or left alone with a full-sentence reason) and Tune mode computes what plain Eval mode computes, in float64,
gradients included. The modules are written here, in the shapes Hugging Face transformers and detectron2 use."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tune
from tests.tune.helpers import assert_matches_eval, randomize_bn

X = torch.randn(2, 3, 7, 9, dtype=torch.float64)


class HFFrozenBatchNorm2d(nn.Module):
    """Like transformers' DetrFrozenBatchNorm2d: buffers only, eps hard-coded in forward, no `eps` attribute."""

    def __init__(self, n: int):
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((n,), value))

    def forward(self, x):
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + 1e-5).rsqrt()
        return x * scale + (self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale)


class D2FrozenBatchNorm2d(HFFrozenBatchNorm2d):
    """Like detectron2's FrozenBatchNorm2d: an `eps` attribute, and F.batch_norm when no gradient is needed."""

    def __init__(self, n: int, eps: float = 1e-3):
        super().__init__(n)
        self.eps = eps

    def forward(self, x):
        if x.requires_grad:
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            bias = self.bias - self.running_mean * scale
            return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, eps=self.eps)


class LookAlike(HFFrozenBatchNorm2d):
    """BatchNorm's buffers, but a forward that ignores the running mean: must never be folded."""

    def forward(self, x):
        return x * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


def _randomized(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if tune.is_bn_like(module):
            n = module.running_mean.numel()
            module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator))
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.1)
    return model.double()


@pytest.mark.parametrize("frozen", [HFFrozenBatchNorm2d, D2FrozenBatchNorm2d])
def test_frozen_bn_of_other_libraries_is_folded_exactly_in_tune_and_deploy(frozen):
    model = _randomized(nn.Sequential(nn.Conv2d(3, 8, 3), frozen(8), nn.ReLU(), nn.Conv2d(8, 4, 1), frozen(4)))
    for mode in (model.eval(), model.train()):  # a frozen BN has no training mode
        report = assert_matches_eval(mode, X, rtol=1e-9)
        assert report.pairs == [("0", "1"), ("3", "4")] and report.skipped == []
    deployed = copy.deepcopy(model)
    tune.turn_on(deployed, mode="deploy")
    assert torch.allclose(deployed(X), model(X), rtol=1e-9, atol=0)


def test_frozen_bn_converted_survives_pickling_and_deepcopy():
    model = _randomized(nn.Sequential(nn.Conv2d(3, 8, 3), HFFrozenBatchNorm2d(8)))
    want = model(X)
    tune.turn_on(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for copied in (torch.load(buffer, weights_only=False), copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert torch.allclose(copied(X), want, rtol=1e-12, atol=0)


def test_a_module_with_bn_buffers_but_another_forward_is_left_alone_with_a_reason():
    model = _randomized(nn.Sequential(nn.Conv2d(3, 8, 3), LookAlike(8)))
    report = tune.turn_on(model)
    assert report.pairs == []
    ((name, reason),) = report.skipped
    assert name == "1" and reason.startswith("LookAlike holds BatchNorm's buffers but its forward")
    assert "not known to be a frozen BatchNorm" in reason


class FlagBlock(nn.Module):
    """A forward with a bool argument that returns the conv's output too when asked (HF's output_hidden_states)."""

    def __init__(self):
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.top, self.top_bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x, output_hidden_states: bool = False):
        stem = self.stem(x)
        hidden = (stem,) if output_hidden_states else None
        out = self.top_bn(self.top(self.stem_bn(stem)))
        return out if hidden is None else (out, *hidden)


def test_a_bool_argument_is_followed_both_ways_and_a_conv_output_returned_on_one_path_is_not_folded():
    model = randomize_bn(FlagBlock()).eval().double()
    for flag in (False, True):
        report = assert_matches_eval(model, X, flag, rtol=1e-9)
    assert report.pairs == [("top", "top_bn")]
    ((name, reason),) = report.skipped
    assert name == "stem_bn" and "also used by the return value of the model" in reason


class PadsFromShape(nn.Module):
    """A conv layer that pads to TensorFlow's 'same' from the input's size in its forward (HF MobileNetV1)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4)

    def forward(self, x):
        height, width = x.shape[-2:]
        pad_h = max(3 - 2, 0) if height % 2 == 0 else max(3 - height % 2, 0)
        pad_w = max(3 - 2, 0) if width % 2 == 0 else max(3 - width % 2, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return self.bn(self.conv(x))


class PadsFromIntSizes(PadsFromShape):
    """The same, with the sizes taken as Python ints first (HF MobileNetV2's int(features.shape[-2]))."""

    def forward(self, x):
        height, width = int(x.shape[-2]), int(x.shape[-1])
        pad_h = 1 if height % 2 == 0 else 2
        pad_w = 1 if width % 2 == 0 else 2
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return self.bn(self.conv(x))


class LoopsOverInputs(nn.Module):
    """A head that loops over a list of feature maps, then fuses them (HF Segformer's decode head)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(3, 2, 1) for _ in range(2))
        self.fuse, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, features):
        maps = [proj(f) for f, proj in zip(features, self.proj, strict=False)]
        return self.bn(self.fuse(torch.cat(maps, dim=1)))


@pytest.mark.parametrize("layer", [PadsFromShape, PadsFromIntSizes])
def test_a_conv_that_pads_from_the_input_size_is_traced_on_every_path(layer):
    model = randomize_bn(layer()).eval().double()
    for x in (X, X[..., :8, :8]):
        assert assert_matches_eval(model, x, rtol=1e-9).pairs == [("conv", "bn")]
    assert "int" not in globals() and "float" not in globals()  # discovery put the builtins back


def test_a_forward_that_iterates_over_a_list_input_is_traced_for_every_length():
    model = randomize_bn(LoopsOverInputs()).eval().double()
    report = tune.find_pairs(model)
    assert report.pairs == [("fuse", "bn")] and report.skipped == []
    reference, tuned = copy.deepcopy(model), copy.deepcopy(model)
    tune.turn_on(tuned)
    features = [X.clone().requires_grad_(), X.clone().requires_grad_()]
    want, got = reference(features), tuned([f.detach().clone().requires_grad_() for f in features])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    want.square().sum().backward()
    got.square().sum().backward()
    for (name, p), q in zip(reference.named_parameters(), tuned.parameters(), strict=True):
        assert torch.allclose(q.grad, p.grad, rtol=1e-10, atol=1e-12), name


def test_find_pairs_is_a_dry_run():
    model = randomize_bn(FlagBlock()).eval()
    state = copy.deepcopy(model.state_dict())
    assert tune.find_pairs(model).pairs == [("top", "top_bn")]
    assert "forward" not in model.top.__dict__ and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())

