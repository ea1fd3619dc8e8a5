"""The public contract of tune: turn_on / turn_off / deploy / freeze_bn_stats, errors, and what must not change."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn

import tune
from tests.tune.helpers import assert_matches_eval, forward_backward, max_relative_error, randomize_bn


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ), seed)


def test_unknown_mode_and_non_module_are_rejected_clearly():
    with pytest.raises(ValueError, match="'tune' or 'deploy'"):
        tune.turn_on(small_net(), mode="tuned")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        tune.turn_on(lambda x: x)
    with pytest.raises(TypeError):
        tune.turn_off("model")


def test_report_lists_pairs_and_reads_well():
    report = tune.turn_on(small_net())
    assert report.pairs == [("0", "1"), ("3", "4")]
    assert report.skipped == []
    assert "2 Conv->BN pairs converted" in str(report)


def test_pairs_in_training_mode_are_reported_and_warned_about_until_bn_is_frozen():
    model = small_net().train()
    report = tune.turn_on(model)
    assert report.in_training_mode == ["1", "4"]
    assert "2 of these BN layers are in training mode" in str(report) and "freeze_bn_stats" in str(report)
    with pytest.warns(UserWarning, match="tune.freeze_bn_stats"):
        forward_backward(model, torch.randn(2, 3, 8, 8))
    frozen = small_net()
    tune.freeze_bn_stats(frozen)
    assert tune.turn_on(frozen.train()).in_training_mode == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forward_backward(frozen.train(), torch.randn(2, 3, 8, 8))


def test_state_dict_parameters_and_an_existing_optimizer_are_untouched():
    model = small_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tune.turn_on(model.eval())
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    forward_backward(model, torch.randn(2, 3, 8, 8))
    optimizer.step()
    assert not torch.equal(model.state_dict()["0.weight"], before["0.weight"])


def test_turning_on_twice_is_harmless_and_turn_off_restores_exactly():
    model = small_net().eval()
    reference = copy.deepcopy(model)
    tune.turn_on(model)
    assert tune.turn_on(model).pairs == [("0", "1"), ("3", "4")]
    assert sorted(tune.turn_off(model)) == ["0", "1", "3", "4"]
    x = torch.randn(2, 3, 8, 8)
    out, gx, grads = forward_backward(model, x)
    ref_out, ref_gx, ref_grads = forward_backward(reference, x)
    assert torch.equal(out[0], ref_out[0]) and torch.equal(gx, ref_gx)
    assert all(torch.equal(grads[k], ref_grads[k]) for k in ref_grads)
    assert "forward" not in model[0].__dict__


@pytest.mark.filterwarnings("ignore:tune. a pair whose BN is in training mode")
def test_train_mode_runs_the_original_conv_and_bn_and_updates_running_stats():
    model, reference = small_net(), small_net()
    tune.turn_on(model)
    model.train(), reference.train()
    x = torch.randn(4, 3, 8, 8)
    out, _, grads = forward_backward(model, x)
    ref_out, _, ref_grads = forward_backward(reference, x)
    assert torch.equal(out[0], ref_out[0])
    assert torch.equal(model[1].running_mean, reference[1].running_mean)
    assert torch.equal(model[1].num_batches_tracked, reference[1].num_batches_tracked)
    model.eval(), reference.eval()
    assert max_relative_error(model(x), reference(x)) < 1e-5


@pytest.mark.filterwarnings("ignore:tune. a pair whose BN is in training mode")
def test_the_models_own_forward_keeps_running():
    class TwoHeaded(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)

        def forward(self, x):
            features = self.bn(self.conv(x)).mean((2, 3))
            return (self.fc(features), features) if self.training else self.fc(features)

    model = randomize_bn(TwoHeaded())
    assert tune.turn_on(model).pairs == [("conv", "bn")]
    x = torch.randn(2, 3, 6, 6)
    assert isinstance(model.train()(x), tuple)
    assert isinstance(model.eval()(x), torch.Tensor)
    tune.freeze_bn_stats(model)
    assert_matches_eval(model.train(), x, rtol=1e-5)


def test_deepcopy_and_torch_save_load_keep_tune_mode(tmp_path):
    model = small_net().eval()
    reference = copy.deepcopy(model)
    tune.turn_on(model)
    clone = copy.deepcopy(model)
    plan = clone[0].forward.args[0]
    assert plan.conv is clone[0] and plan.bn is clone[1] and clone[1].forward.args[0] is plan
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(2, 3, 8, 8)
    for copied in (clone, loaded):
        assert "forward" in copied[0].__dict__
        assert max_relative_error(copied(x), reference(x)) < 1e-5
        with torch.no_grad():
            copied[1].running_var.mul_(4)
        assert max_relative_error(copied(x), reference(x)) > 1e-3


def test_no_grad_and_inference_mode_see_every_parameter_change():
    model = small_net().eval()
    reference = copy.deepcopy(model)
    tune.turn_on(model)
    x = torch.randn(2, 3, 8, 8)
    other = small_net(seed=1).state_dict()
    for change in (lambda m: m[0].weight.mul_(1.5), lambda m: m[1].running_mean.add_(0.3),
                   lambda m: m.load_state_dict(other), lambda m: m.to(torch.float64)):
        with torch.no_grad():
            change(model), change(reference)
        for context in (torch.no_grad, torch.inference_mode):
            with context():
                x_ = x.to(model[0].weight.dtype)
                assert max_relative_error(model(x_), reference(x_)) < 1e-5


def test_freeze_bn_stats_survives_train_and_can_be_undone():
    model = small_net()
    assert tune.freeze_bn_stats(model) == ["1", "4"]
    model.train()
    assert model.training and not model[1].training and not model[4].training
    before = model[1].running_mean.clone()
    model(torch.randn(2, 3, 8, 8))
    assert torch.equal(model[1].running_mean, before)
    assert tune.unfreeze_bn_stats(model) == ["1", "4"]
    assert model[1].training
    model.eval().train()
    assert model[4].training


def test_deploy_folds_permanently_and_matches_eval():
    model = small_net().eval()
    reference = copy.deepcopy(model)
    report = tune.turn_on(model, mode="deploy")
    assert "folded permanently" in str(report) and report.pairs == [("0", "1"), ("3", "4")]
    assert isinstance(model[1], nn.Identity) and model[3].bias is not None
    x = torch.randn(2, 3, 8, 8)
    assert max_relative_error(model(x), reference(x)) < 1e-5
    assert tune.turn_on(model, mode="tune").pairs == []


def test_deploy_keeps_timm_activation():
    pytest.importorskip("timm")
    from timm.layers import BatchNormAct2d

    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4, act_layer=nn.ReLU))).eval()
    reference = copy.deepcopy(model)
    tune.turn_on(model, mode="deploy")
    x = torch.randn(2, 3, 6, 6)
    assert max_relative_error(model(x), reference(x)) < 1e-5 and (model(x) >= 0).all()


@pytest.mark.slow
def test_resnet_in_train_mode_with_frozen_bn_trains_like_eval():
    torchvision = pytest.importorskip("torchvision")
    model = randomize_bn(torchvision.models.resnet18(num_classes=5))
    tune.freeze_bn_stats(model)
    assert_matches_eval(model.train(), torch.randn(2, 3, 32, 32), rtol=1e-4, steps=2)


@pytest.mark.slow
def test_importing_tune_imports_neither_timm_nor_torchvision():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, tune; print(sorted(m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision')))"
    root = str(Path(tune.__file__).parent.parent)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": root}).stdout
    assert out.strip() == "[]"
