"""The digit backbone: built by name, never with weights it does not have, three ConvBN pairs that Tune mode folds
with Eval's gradients and less kept for backward, and buildable by the benchmark tool."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import tune
from benchmarks.models import random_model
from experiments.bn_modes import apply_bn_mode
from experiments.classifier import Classifier
from experiments.models import DTN, build_backbone
from experiments.utils import ExperimentError


def test_needs_weights_from_somewhere():
    with pytest.raises(ExperimentError, match="dtn has no downloadable weights: pass --pretrained PATH"):
        build_backbone("dtn")
    backbone, features = build_backbone("dtn", scratch=True)
    assert features == 4 * 4 * 128 and backbone.eval()(torch.randn(2, 3, 28, 28)).shape == (2, features)
    assert DTN(image_size=32).features == 4 * 4 * 128 and DTN((8, 8, 16), image_size=16).features == 2 * 2 * 16


def test_loads_the_backbone_of_an_engine_checkpoint(tmp_path):
    trained = Classifier(DTN(), DTN().features, 10)
    torch.save({"model": {f"classifier.{key}": value for key, value in trained.state_dict().items()}},
               tmp_path / "checkpoint.pt")
    backbone, _ = build_backbone("dtn", pretrained=str(tmp_path / "checkpoint.pt"))
    for key, value in trained.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


def _calibrated() -> DTN:
    """A DTN whose BN layers hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(0)
    backbone = DTN().double()
    backbone.train()
    with torch.no_grad():
        for _ in range(3):
            backbone(torch.randn(16, 3, 28, 28, dtype=torch.float64) * 2 + 0.5)
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    return backbone


def _step(backbone: DTN, mode: str, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
    """Gradients of one step of `mode` (dropout off, so that modes see the same network) and bytes kept."""
    model = copy.deepcopy(backbone)
    apply_bn_mode(model, mode)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout2d):
            module.p = 0.0
    with tune.kept_for_backward(exclude=model) as kept:
        loss = F.cross_entropy(model(x)[:, :10], torch.arange(len(x)) % 10)
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}, kept.nbytes


def test_tune_folds_all_three_pairs_with_evals_gradients_and_keeps_less():
    backbone = _calibrated()
    assert tune.turn_on(copy.deepcopy(backbone).eval()).pairs == [("0", "1"), ("4", "5"), ("8", "9")]
    x = torch.randn(8, 3, 28, 28, dtype=torch.float64)
    eval_grads, eval_kept = _step(backbone, "eval", x)
    tune_grads, tune_kept = _step(backbone, "tune", x)
    assert eval_grads.keys() == tune_grads.keys()
    for name, grad in eval_grads.items():
        torch.testing.assert_close(tune_grads[name], grad, rtol=1e-9, atol=1e-12, msg=name)
    assert tune_kept < 0.8 * eval_kept


def test_benchmark_builds_it_with_a_ten_class_head():
    model = random_model("dtn")
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)
    assert len(tune.turn_on(model.eval()).pairs) == 3
