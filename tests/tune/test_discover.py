"""Discovery leaves no trace in a model, folds convs that pad to TensorFlow's 'same' themselves, and explains every
BN it leaves alone in the terms of the model's source, never in torch.fx's."""

from __future__ import annotations

import copy
import io
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tune
from tests.tune.helpers import (
    assert_matches_eval,
    forward_backward,
    library_model,
    max_relative_error,
    randomize_bn,
)
from tune.layers import pads_to_same


def save_and_load(model: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


class Caching(nn.Module):
    """A forward that stores what it sees in a dict, a list, a set, a nested container and a submodule registry."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.cache, self.seen, self.shapes = {}, [], set()
        self.nested = {"levels": [{}], "pair": ({}, [])}
        self.extras = nn.ModuleDict()

    def forward(self, x):
        y = self.bn(self.conv(x))
        self.cache[str(x.shape)] = y
        self.seen.append(y)
        self.shapes.add(str(type(y)))
        self.nested["levels"][0]["y"] = y
        self.nested["levels"].append(y)
        self.nested["pair"][1].append(y)
        self.extras[f"n{len(self.extras)}"] = nn.Identity()
        self.note = y
        return y


def _state(model: Caching) -> tuple:
    return (dict(model.cache), list(model.seen), set(model.shapes), repr(model.nested), list(model.extras),
            "note" in model.__dict__, list(model._modules), list(model._parameters))


def test_a_forward_that_caches_into_containers_is_left_exactly_as_it_was():
    model = randomize_bn(Caching()).eval()
    containers = (model.cache, model.seen, model.shapes, model.nested, model.nested["levels"], model.extras._modules)
    before = _state(model)
    assert tune.turn_on(model).pairs == [("conv", "bn")]
    assert _state(model) == before
    assert all(a is b for a, b in zip(containers, (model.cache, model.seen, model.shapes, model.nested,
                                                   model.nested["levels"], model.extras._modules), strict=True))
    x = torch.randn(2, 3, 5, 5)
    loaded = save_and_load(model)
    assert "forward" in loaded.conv.__dict__
    assert loaded(x).shape == (2, 4, 5, 5) and len(loaded.cache) == 1 and len(loaded.extras) == 1


def test_a_module_left_with_an_fx_proxy_would_not_pickle():
    """The check above can fail: a forward that cached an fx value makes the model unpicklable."""
    model = Caching()
    torch.fx.Tracer().trace(model)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises on the traced graph's objects
        save_and_load(model)


ATTENTION_MODELS = ["levit_128s", "levit_conv_128s", "efficientvit_m0", "efficientformer_l1", "efficientformerv2_s0",
                    "tiny_vit_5m_224"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_timm_attention_models_with_a_bias_cache_save_load_and_run_after_turn_on(name):
    torch.manual_seed(0)
    model = randomize_bn(library_model(f"timm:{name}")).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
    for mode in tune.MODES:
        converted = copy.deepcopy(model)
        assert tune.turn_on(converted, mode=mode).pairs
        loaded = save_and_load(converted)
        with torch.no_grad():
            assert max_relative_error(loaded(x), want) < 1e-4, mode


class PadSame1d(nn.Conv1d):
    """A conv of our own (no timm) whose forward pads to TensorFlow's 'same' for each input, then convolves."""

    def forward(self, x):
        size, (k,), (s,), (d,) = x.shape[-1], self.kernel_size, self.stride, self.dilation
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        return F.conv1d(F.pad(x, (total // 2, total - total // 2)), self.weight, self.bias, s, 0, d, self.groups)


class PadOnce1d(PadSame1d):
    """Pads for the first input's size only, like timm's Conv2dSameExport: the padding is wrong for other sizes."""

    def forward(self, x):
        if getattr(self, "size", None) is None:
            self.size = x.shape[-1]
        size, (k,), (s,), (d,) = self.size, self.kernel_size, self.stride, self.dilation
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        return F.conv1d(F.pad(x, (total // 2, total - total // 2)), self.weight, self.bias, s, 0, d, self.groups)


def test_a_conv_that_pads_to_same_itself_is_recognised_and_matches_eval_in_float64():
    for kernel, stride, dilation in [(3, 2, 1), (4, 2, 1), (3, 3, 2), (5, 1, 1)]:
        conv = PadSame1d(3, 4, kernel, stride=stride, dilation=dilation)
        assert pads_to_same(conv)
        model = randomize_bn(nn.Sequential(conv, nn.BatchNorm1d(4), nn.ReLU()).double()).eval()
        for size in (7, 8, 9):
            assert_matches_eval(model, torch.randn(2, 3, size, dtype=torch.float64), rtol=1e-10)


def test_convs_that_do_more_than_pad_to_same_are_left_alone_and_not_changed():
    once = PadOnce1d(3, 4, 3, stride=2)
    assert not pads_to_same(copy.deepcopy(once))
    model = nn.Sequential(once, nn.BatchNorm1d(4))
    report = tune.turn_on(model)
    assert report.pairs == [] and "PadOnce1d has a custom forward" in report.skipped[0][1]
    assert "size" not in once.__dict__
    pytest.importorskip("timm")
    from timm.layers import Conv2dSame, StdConv2dSame

    assert pads_to_same(Conv2dSame(3, 4, 3, stride=2))
    assert not pads_to_same(StdConv2dSame(3, 4, 3, stride=2, padding="same"))  # weight standardisation
    assert not pads_to_same(nn.Conv2d(3, 4, 3, stride=2))


@pytest.mark.slow
def test_tf_efficientnet_conv2d_same_pairs_are_folded_exactly_in_tune_and_deploy():
    torch.manual_seed(0)
    model = randomize_bn(library_model("timm:tf_efficientnet_b0")).eval().double()
    x = torch.randn(2, 3, 65, 66, dtype=torch.float64)
    report = assert_matches_eval(model, x, rtol=1e-9, steps=0)
    assert len(report.pairs) == 49 and report.skipped == []
    same = [conv for conv, _ in report.pairs if type(model.get_submodule(conv)).__name__ == "Conv2dSame"]
    assert same
    deployed = copy.deepcopy(model)
    tune.turn_on(deployed, mode="deploy")
    (out, _, _), (want, _, _) = forward_backward(deployed, x), forward_backward(model, x)
    assert max_relative_error(out[0], want[0]) < 1e-9


FX_WORDS = re.compile(r"placeholder|getattr_|_operator|Proxy|call_module|call_function|\b[a-z]+_\d+\b")


def _node_names(model: nn.Module) -> set[str]:
    return {name.replace(".", "_") for name, _ in model.named_modules() if "." in name}


class ResidualTail(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.ident = nn.Conv2d(3, 3, 1), nn.Identity()
        self.bn, self.bn2, self.bn3, self.bn4 = (nn.BatchNorm2d(3) for _ in range(4))

    def forward(self, x):
        y = self.conv(x)
        z = self.bn(y) + y
        return self.bn4(self.bn3(self.bn2(self.ident(z)) * z) + x.mean())


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.tail = nn.Conv2d(3, 3, 1), nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())

    def forward(self, x):
        y = self.conv(x)
        return self.tail(y) if y.sum() > 0 else self.tail(-y)


@pytest.mark.parametrize("name", ["timm:repvgg_a0", "timm:mixnet_s", "timm:efficientvit_m0", "timm:levit_128s",
                                  "timm:fastvit_t8", "residual", "untraceable"])
def test_no_reason_speaks_torch_fx(name):
    model = {"residual": ResidualTail, "untraceable": Untraceable}.get(name, lambda: library_model(name))()
    report = tune.turn_on(model)
    assert report.skipped
    node_names = _node_names(model)
    for bn, reason in report.skipped:
        assert not FX_WORDS.search(reason), (bn, reason)
        assert not any(node in reason for node in node_names), (bn, reason)


def test_reasons_name_operators_modules_and_classes():
    reasons = dict(tune.turn_on(ResidualTail()).skipped)
    assert reasons["bn"].startswith("the output of conv conv is also used by a residual add (+), which would see")
    assert reasons["bn2"].startswith("its input comes from module ident (Identity), not from a conv")
    assert reasons["bn3"].startswith("its input comes from a multiplication (*), not from a conv")
    assert reasons["bn4"].startswith("its input comes from a residual add (+), not from a conv")
    (_, reason), = tune.turn_on(Untraceable()).skipped
    assert reason == "its input comes from a negation (-x), not from a conv, so there is no conv to fold it into"
