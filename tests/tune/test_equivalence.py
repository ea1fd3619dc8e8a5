"""Tune mode trains exactly like plain Eval mode, over the whole coverage matrix of conv and BN layers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import tune
from tests.tune.helpers import assert_matches_eval, forward_backward, max_relative_error, randomize_bn

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
BNS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}



class ConvBN(nn.Module):
    """Conv -> BN -> ReLU, the block Tune mode folds, plus a tail so gradients are not trivial."""

    def __init__(self, conv: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@st.composite
def conv_bn_configs(draw):
    dims = draw(st.sampled_from([1, 2, 3]))
    transposed = draw(st.booleans())
    groups = draw(st.sampled_from([1, 2]))
    in_channels = groups * draw(st.integers(1, 3))
    depthwise = not transposed and draw(st.booleans())
    out_channels = in_channels if depthwise else groups * draw(st.integers(1, 3))
    groups = in_channels if depthwise else groups
    kernel = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    if transposed:
        stride = draw(st.integers(1, 2))
        conv = TRANSPOSED[dims](in_channels, out_channels, kernel, stride=stride, padding=draw(st.integers(0, 1)),
                                output_padding=draw(st.integers(0, stride - 1)), groups=groups, bias=bias,
                                dilation=dilation)
    else:
        padding = draw(st.sampled_from([0, 1, "same", "valid"]))
        stride = 1 if padding == "same" else draw(st.integers(1, 2))
        mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])) if padding != "same" else "zeros"
        conv = CONVS[dims](in_channels, out_channels, kernel, stride=stride, padding=padding, dilation=dilation,
                           groups=groups, bias=bias, padding_mode=mode)
    bn = BNS[dims](out_channels, affine=draw(st.booleans()), eps=draw(st.sampled_from([1e-5, 1e-3])))
    size = draw(st.integers(5, 7)) if dims < 3 else 5
    channels_last = dims == 2 and draw(st.booleans())
    return conv, bn, (2, in_channels, *([size] * dims)), channels_last


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(conv_bn_configs(), st.integers(0, 2**16))
def test_tune_matches_eval_on_every_conv_bn_configuration(strategy, config, seed):
    conv, bn, shape, channels_last = config
    torch.manual_seed(seed)
    model = randomize_bn(ConvBN(conv, bn).double(), seed)
    x = torch.randn(shape, dtype=torch.float64)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    report = assert_matches_eval(model.eval(), x, rtol=1e-10, strategy=strategy)
    assert report.pairs == [("conv", "bn")]


def test_linear_batchnorm1d_pair_matches_eval_and_3d_input_runs_unfolded(strategy):
    model = randomize_bn(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).double())
    report = assert_matches_eval(model.eval(), torch.randn(4, 6, dtype=torch.float64), rtol=1e-10, strategy=strategy)
    assert report.pairs == [("0", "1")]
    square = randomize_bn(nn.Sequential(nn.Linear(5, 5), nn.BatchNorm1d(5)).double()).eval()
    assert_matches_eval(square.eval(), torch.randn(2, 5, 5, dtype=torch.float64), rtol=1e-10, strategy=strategy)


def test_conv_transpose_output_size_argument_is_honoured(strategy):
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(6)

        def forward(self, x):
            return self.bn(self.conv(x, output_size=[10, 10]))

    model = randomize_bn(Up().double())
    assert_matches_eval(model.eval(), torch.randn(2, 4, 5, 5, dtype=torch.float64), rtol=1e-10, strategy=strategy)


def test_bn_subclass_and_sync_batchnorm_in_eval_mode_are_folded(strategy):
    class MyBN(nn.BatchNorm2d):
        pass

    for bn in (MyBN(4), nn.SyncBatchNorm(4)):
        model = randomize_bn(ConvBN(nn.Conv2d(3, 4, 3), bn).double())
        assert assert_matches_eval(model.eval(), torch.randn(2, 3, 6, 6, dtype=torch.float64), rtol=1e-10,
                               strategy=strategy).pairs


def test_timm_batchnormact_keeps_its_activation_and_dropout_after_the_fold(strategy):
    pytest.importorskip("timm")
    from timm.layers import BatchNormAct2d

    model = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4, act_layer=nn.SiLU, drop_layer=nn.Identity))
    model = randomize_bn(model.double())
    tuned_output = assert_matches_eval(model.eval(), torch.randn(2, 3, 6, 6, dtype=torch.float64), rtol=1e-10,
                               strategy=strategy)
    assert tuned_output.pairs == [("0", "1")]


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_frozen_batchnorm_folds_and_its_buffers_get_no_gradient(package, strategy):
    pytest.importorskip(package)
    if package == "torchvision":
        from torchvision.ops import FrozenBatchNorm2d as Frozen
    else:
        from timm.layers import FrozenBatchNormAct2d as Frozen
    model = randomize_bn(ConvBN(nn.Conv2d(3, 4, 3, bias=False), Frozen(4)).double())
    report = assert_matches_eval(model.eval(), torch.randn(2, 3, 6, 6, dtype=torch.float64), rtol=1e-10,
                               strategy=strategy)
    assert report.pairs == [("conv", "bn")]
    assert not any(b.requires_grad for b in model.bn.buffers())


@pytest.mark.slow
def test_float32_error_against_a_float64_reference_is_no_worse_than_evals(strategy):
    torchvision = pytest.importorskip("torchvision")

    torch.manual_seed(0)
    eval_model = randomize_bn(torchvision.models.resnet18(num_classes=10)).eval()
    tuned = randomize_bn(torchvision.models.resnet18(num_classes=10)).eval()
    tuned.load_state_dict(eval_model.state_dict())
    tune.turn_on(tuned, strategy=strategy)
    reference = randomize_bn(torchvision.models.resnet18(num_classes=10)).double().eval()
    reference.load_state_dict(eval_model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    want_out, want_gx, want = forward_backward(reference, x.double())
    errors = {}
    for name, model in (("eval", eval_model), ("tune", tuned)):
        out, gx, grads = forward_backward(model, x)
        errors[name] = max([max_relative_error(out[0], want_out[0]), max_relative_error(gx, want_gx)]
                           + [max_relative_error(grads[k], want[k]) for k in want])
    assert errors["tune"] <= 1.5 * errors["eval"], errors


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_autocast_folds_in_float32_then_casts(dtype, strategy):
    torch.manual_seed(0)  # bfloat16's rounding of unseeded weights and inputs exceeds the bounds now and then
    model = randomize_bn(ConvBN(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16))).eval()
    x = torch.randn(4, 8, 12, 12)
    with torch.autocast("cpu", dtype=dtype):
        eval_out, eval_gx, eval_grads = forward_backward(model, x)
    tune.turn_on(model, strategy=strategy)
    with torch.autocast("cpu", dtype=dtype):
        out, gx, grads = forward_backward(model, x)
    assert out[0].dtype == dtype and gx.dtype == torch.float32
    assert all(g.dtype == torch.float32 for g in grads.values())
    assert max_relative_error(out[0], eval_out[0]) < 2e-2
    for name, want in eval_grads.items():
        assert max_relative_error(grads[name], want) < 5e-2, name
