"""The pair-by-pair precision check: its float64 inputs reach every pair, its errors measure rounding only."""

import torch
from torch import nn

from benchmarks import precision, workloads
from benchmarks.models import calibrate_bn


def model_and_batch() -> tuple[nn.Module, workloads.Batch]:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 12, 12, requires_grad=True)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    model = calibrate_bn(model, x.detach())
    return model, workloads._labelled(x, torch.randint(5, (4,)))


def test_every_pair_is_checked_and_float32_errors_are_rounding_sized():
    model, batch = model_and_batch()
    result = precision.measure(model, batch, "float32")
    assert result["pairs"] == 2
    for mode in precision.MODES:
        errors = result[mode]["relative_l2"]
        assert set(errors) == {"input", "conv weight", "conv bias", "BN gamma", "BN beta"}
        assert all(0 < error < 1e-5 for error in errors.values()), (mode, errors)
    assert "| BN gamma |" in precision.format_table(result)


def test_bfloat16_errors_are_bfloat16_sized():
    model, batch = model_and_batch()
    errors = precision.measure(model, batch, "bf16")["tune"]["relative_l2"]
    assert all(1e-5 < error < 5e-2 for error in errors.values()), errors
