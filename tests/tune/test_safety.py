"""What Tune mode must leave alone (and say why), and models torch.fx cannot trace as a whole."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import tune
from tests.tune.helpers import assert_matches_eval, forward_backward, max_relative_error, randomize_bn


def check_left_alone(model: nn.Module, x: torch.Tensor, reason: str) -> tune.Report:
    """turn_on converts nothing, reports the BN with `reason`, and the model still computes exactly as before."""
    model = randomize_bn(model).eval()
    reference = copy.deepcopy(model)
    report = tune.turn_on(model)
    assert report.pairs == []
    assert any(reason in why for _, why in report.skipped), report.skipped
    out, gx, grads = forward_backward(model, x)
    ref_out, ref_gx, ref_grads = forward_backward(reference, x)
    assert torch.equal(out[0], ref_out[0]) and torch.equal(gx, ref_gx)
    assert all(torch.equal(grads[k], ref_grads[k]) for k in ref_grads)
    return report


X = torch.randn(2, 3, 6, 6)


class ConvBN(nn.Module):
    """A conv and a BN; each test writes the forward that uses them."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)


def test_conv_output_with_a_second_user_is_left_alone():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    check_left_alone(Residual(), X, "is also used by")


def test_conv_called_twice_is_left_alone():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(self.conv(self.conv(x)))

    check_left_alone(Twice(), X, "called 2 times")


def test_bn_called_twice_is_left_alone():
    class SharedBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.bn = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(self.a(x)) + self.bn(self.b(x))

    check_left_alone(SharedBN(), X, "it is called 2 times in one forward")


def test_bn_fed_by_concatenation_is_left_alone():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.bn = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(torch.cat([self.a(x), self.b(x)], 1))

    check_left_alone(Cat(), X, "torch.cat")


def test_bn_after_something_that_is_not_a_conv_is_left_alone():
    check_left_alone(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.BatchNorm2d(3)), X, "module 1")


def test_bn_without_running_statistics_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3, track_running_stats=False))
    check_left_alone(model, X, "track_running_stats=False")


def test_module_registered_twice_is_left_alone():
    class Aliased(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
            self.alias = self.block[0]

        def forward(self, x):
            return self.block(x)

    check_left_alone(Aliased(), X, "registered under several names")


def test_conv_with_a_custom_forward_is_left_alone():
    class WeightStandardized(nn.Conv2d):
        def forward(self, x):
            w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / self.weight.std((1, 2, 3), keepdim=True)
            return self._conv_forward(x, w, self.bias)

    check_left_alone(nn.Sequential(WeightStandardized(3, 3, 3), nn.BatchNorm2d(3)), X, "custom forward")


def test_conv_with_a_forward_hook_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
    model[0].register_forward_hook(lambda module, args, out: None)
    check_left_alone(model, X, "forward hooks")


def test_conv_weight_read_outside_the_module_is_left_alone():
    class Tied(ConvBN):
        def forward(self, x):
            return self.bn(self.conv(x)) * self.conv.weight.sum()

    check_left_alone(Tied(), X, "read outside")


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(self.stem(x))))


class Detector(nn.Module):
    """Data-dependent control flow at the top: torch.fx cannot trace it, its backbone it can."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        features = self.backbone(x)
        if features.mean() > 0:
            return self.head(features)
        return -self.head(features)


def test_untraceable_top_level_falls_back_to_tracing_the_backbone():
    model = randomize_bn(Detector())
    report = assert_matches_eval(model.eval(), X, rtol=1e-5)
    assert report.pairs == [("backbone.stem.0", "backbone.stem.1"), ("backbone.conv", "backbone.bn")]


def test_bn_inside_an_untraceable_module_is_reported_with_the_trace_error():
    class CountsChannels(ConvBN):
        def forward(self, x):
            return sum(self.bn(self.conv(x[:, i : i + 1].expand_as(x))) for i in range(int(x.shape[1])))

    reason = check_left_alone(CountsChannels(), X, "torch.fx cannot trace").skipped[0][1]
    assert reason.startswith("it lies inside a module that could not be traced (torch.fx cannot trace the model: its")
    assert "to convert it, change what stopped the trace" in reason


def test_a_module_branching_on_a_tensor_or_its_size_is_traced_on_every_path():
    class Branches(ConvBN):
        def forward(self, x):
            y = self.bn(self.conv(x))
            y = y if y.sum() > 0 else -y
            return y[:, :, : int(x.shape[-1]) // 2] if x.shape[-1] % 2 else y

    model = randomize_bn(Branches()).eval().double()
    for x in (X.double(), X[..., :5].double()):
        assert assert_matches_eval(model, x, rtol=1e-9).pairs == [("conv", "bn")]


def test_branch_taken_only_in_training_is_seen():
    class AuxInTraining(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.aux = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.Conv2d(3, 1, 1)

        def forward(self, x):
            y = self.conv(x)
            out = self.bn(y)
            return (out, self.aux(y)) if self.training else out

    model = randomize_bn(AuxInTraining()).eval()
    report = tune.turn_on(model)
    assert report.pairs == [] and "is also used by module aux (Conv2d)" in report.skipped[0][1]
    assert model.training is False and model.conv.training is False


@pytest.mark.filterwarnings("ignore:tune. a pair whose BN is in training mode")
def test_models_mode_is_restored_after_discovery():
    model = randomize_bn(Backbone()).train()
    model.bn.eval()
    tune.turn_on(model)
    assert model.training and model.stem[1].training and not model.bn.training
    x = torch.randn(2, 3, 6, 6)
    reference = copy.deepcopy(model)
    tune.turn_off(reference)
    assert max_relative_error(model(x), reference(x)) < 1e-5


def test_discovery_leaves_no_fx_proxy_in_state_a_forward_caches():
    class CachesScale(nn.Module):
        """Like torchvision's MultiScaleRoIAlign, which stores its scales on first use."""

        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.scale = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), None

        def forward(self, x):
            if self.scale is None:
                self.scale = x.shape[-1]
            return self.bn(self.conv(x)) * self.scale

    model = randomize_bn(CachesScale()).eval()
    assert tune.turn_on(model).pairs == [("conv", "bn")]
    assert model.scale is None
    assert model(X).shape == X.shape and model.scale == X.shape[-1]


@pytest.mark.filterwarnings("ignore:tune. a pair whose BN is in training mode")
@pytest.mark.slow
def test_detector_backbone_with_frozen_bn_is_converted_and_the_detector_still_runs():
    pytest.importorskip("torchvision")
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    detector = randomize_bn(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=96, max_size=96))
    reference = copy.deepcopy(detector).eval()
    report = tune.turn_on(detector.eval())
    assert len(report.pairs) == 53 and all(conv.startswith("backbone.body.") for conv, _ in report.pairs)
    images = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        got, want = detector(images)[0], reference(images)[0]
    assert got.keys() == want.keys() == {"boxes", "labels", "scores"}

    class Features(nn.Module):
        """The backbone's FPN levels as a tuple, in float64, so gradients compare to rounding."""

        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone.double()

        def forward(self, x):
            return tuple(self.backbone(x).values())

    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    (out, gx, grads), (ref_out, ref_gx, ref_grads) = (
        forward_backward(Features(m.backbone).train(), x) for m in (detector, reference)
    )
    assert all(max_relative_error(o, r) < 1e-9 for o, r in zip(out, ref_out, strict=True))
    assert max_relative_error(gx, ref_gx) < 1e-9
    assert grads.keys() == ref_grads.keys() and all(max_relative_error(grads[k], ref_grads[k]) < 1e-9 for k in grads)


def test_recomputing_from_an_input_modified_in_place_fails_loudly():
    """A frozen conv keeps no input for backward, so only the recipe notices that its input changed in place."""
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).eval()
    model[0].weight.requires_grad_(False)
    tune.turn_on(model, strategy="recompute")
    x = torch.randn(1, 3, 4, 4)
    out = model(x)
    x.mul_(2)
    with pytest.raises(RuntimeError, match="modified in place"):
        out.sum().backward()
