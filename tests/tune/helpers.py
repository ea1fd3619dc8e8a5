"""Shared checks for the tune tests: models of torchvision and timm where installed, realistic BN statistics and
side-by-side comparison with plain Eval mode."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import tune
from tests.tune.oracles import randomize_bn  # noqa: F401 - the tests import it from here


def library_model(name: str) -> nn.Module:
    """A randomly initialised torchvision model, or timm's when named 'timm:NAME'; the test calling it is skipped
    where that library is not installed (tests/tune need torch alone)."""
    if name.startswith("timm:"):
        return pytest.importorskip("timm").create_model(name.removeprefix("timm:"), pretrained=False)
    return pytest.importorskip("torchvision").models.get_model(name, weights=None)


def _loss(output: Tensor | tuple) -> Tensor:
    outputs = output if isinstance(output, tuple | list) else (output,)
    weights = [torch.linspace(-1, 1, o.numel(), dtype=o.dtype, device=o.device).reshape(o.shape) for o in outputs]
    return sum((o * w).sum() + 0.1 * o.square().sum() for o, w in zip(outputs, weights, strict=True))


def forward_backward(model: nn.Module, x: Tensor, *args) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
    """Outputs, input gradient and every parameter gradient of one forward/backward."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(x.is_floating_point())
    output = model(x, *args)
    _loss(output).backward()
    outputs = [o.detach() for o in (output if isinstance(output, tuple | list) else (output,))]
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return outputs, x.grad, grads


def max_relative_error(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b|: one number per tensor, robust to tiny entries."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def assert_matches_eval(model: nn.Module, x: Tensor, *args, rtol: float = 1e-5, steps: int = 1,
                        strategy: str = "auto") -> tune.Report:
    """Convert a copy of `model` to Tune mode and check it trains exactly like `model` itself (BNs in eval mode).

    Compared: outputs, the input gradient and every parameter gradient; then one SGD step on each, and the
    outputs and gradients again (so the fold is recomputed from the updated parameters).
    """
    reference = model
    tuned = copy.deepcopy(reference)
    report = tune.turn_on(tuned, strategy=strategy)
    optimizers = [torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for m in (reference, tuned)]
    for _ in range(steps + 1):
        (ref_out, ref_gx, ref_grads), (out, gx, grads) = (forward_backward(m, x, *args) for m in (reference, tuned))
        assert grads.keys() == ref_grads.keys()
        for got, want in zip(out, ref_out, strict=True):
            assert max_relative_error(got, want) < rtol
        if ref_gx is not None:
            assert max_relative_error(gx, ref_gx) < rtol
        for name, want in ref_grads.items():
            assert max_relative_error(grads[name], want) < rtol, name
        for optimizer in optimizers:
            optimizer.step()
    return report


def kept_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes autograd keeps for backward in one forward of `model`, parameters and buffers excluded."""
    with tune.kept_for_backward(exclude=model) as kept:
        output = model(x)
    del output
    return kept.nbytes
