"""GPU paths (cuDNN kernels, fp16 autocast, channels_last, CUDA graphs): run where CUDA exists, skipped elsewhere."""

from __future__ import annotations

import copy

import pytest
import torch

import tune
from tests.tune.helpers import forward_backward, kept_bytes, max_relative_error, randomize_bn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def ieee_float32():
    """float32 convs and matmuls in IEEE float32 while a test runs: cuDNN runs them in TF32 by default on Ampere and
    later, which alone moves results by about 1e-3 and would hide what the tests compare."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def resnet(dtype=torch.float32) -> torch.nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return randomize_bn(torchvision.models.resnet50(num_classes=10)).eval().to("cuda", dtype)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_tune_matches_eval_in_float64(channels_last, strategy):
    model = resnet(torch.float64)
    x = torch.randn(2, 3, 64, 64, device="cuda", dtype=torch.float64)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    tuned = copy.deepcopy(model)
    tune.turn_on(tuned, strategy=strategy)
    (out, gx, grads), (ref_out, ref_gx, ref_grads) = forward_backward(tuned, x), forward_backward(model, x)
    assert max_relative_error(out[0], ref_out[0]) < 1e-9 and max_relative_error(gx, ref_gx) < 1e-9
    assert all(max_relative_error(grads[k], ref_grads[k]) < 1e-9 for k in ref_grads)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_error_against_float64_is_close_to_evals(dtype, strategy):
    model = resnet()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    want_out = forward_backward(copy.deepcopy(model).double(), x.double())[0][0]
    with torch.autocast("cuda", dtype=dtype):
        eval_out = forward_backward(model, x)[0][0]
        tune.turn_on(model, strategy=strategy)
        tune_out = forward_backward(model, x)[0][0]
    eval_error, tune_error = max_relative_error(eval_out, want_out), max_relative_error(tune_out, want_out)
    assert tune_error <= 2 * eval_error + 1e-3, (tune_error, eval_error)


def relative_l2(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    error = sum((grads[k].double() - reference[k].double()).square().sum() for k in reference)
    return (error / sum(r.double().square().sum() for r in reference.values())).sqrt().item()


@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_fp16_gradients_under_evals_loss_scale_are_finite_and_as_close_to_float64_as_evals(channels_last,
                                                                                                strategy):
    """GradScaler starts at 2**16 and halves the scale while gradients overflow: at the scale it settles on for
    Eval, Tune's float16 gradients must be finite too (dW' and db' are widened before they are scaled by c)."""
    model = resnet()
    x = torch.randn(8, 3, 64, 64, device="cuda")
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)

    def unscaled_grads(module: torch.nn.Module, dtype: torch.dtype | None, scale: float) -> dict[str, torch.Tensor]:
        module.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=dtype is None):
            loss = module(x if dtype is None else x.to(dtype)).float().square().mean()
        (loss * scale).backward()
        return {name: p.grad.double() / scale for name, p in module.named_parameters()}

    def finite(grads: dict[str, torch.Tensor]) -> bool:
        return all(bool(g.isfinite().all()) for g in grads.values())

    scale = 2.0**16  # GradScaler's initial scale
    eval_grads = unscaled_grads(model, None, scale)
    while not finite(eval_grads) and scale > 1:
        scale /= 2
        eval_grads = unscaled_grads(model, None, scale)
    assert finite(eval_grads)
    want = unscaled_grads(copy.deepcopy(model).double(), torch.float64, 1.0)
    tune.turn_on(model, strategy=strategy)
    tune_grads = unscaled_grads(model, None, scale)
    assert finite(tune_grads), f"Tune overflows at the scale Eval runs at ({scale})"
    assert relative_l2(tune_grads, want) <= 2 * relative_l2(eval_grads, want) + 1e-3


def test_cuda_tune_keeps_what_deploy_keeps(strategy):
    model = resnet()
    x = torch.randn(8, 3, 160, 160, device="cuda")
    tuned, deployed = copy.deepcopy(model), copy.deepcopy(model)
    tune.turn_on(tuned, strategy=strategy)
    tune.turn_on(deployed, mode="deploy")
    eval_bytes, tune_bytes, deploy_bytes = (kept_bytes(m, x) for m in (model, tuned, deployed))
    assert tune_bytes <= 1.01 * deploy_bytes < eval_bytes


def test_cuda_tune_step_never_synchronises_with_the_host(strategy):
    model = resnet()
    tune.turn_on(model, strategy=strategy)
    x = torch.randn(4, 3, 64, 64, device="cuda")
    forward_backward(model, x)  # first call: per-pair constants are made
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(x).square().mean().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_graph_captures_a_tune_training_step_and_replays_it_exactly(strategy):
    model = resnet()
    tune.turn_on(model, strategy=strategy)
    static_x = torch.randn(4, 3, 64, 64, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as CUDA graph capture requires
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            model(static_x).square().mean().backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    model.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        model(static_x).square().mean().backward()
    static_x.copy_(torch.randn_like(static_x))
    graph.replay()
    replayed = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model(static_x).square().mean().backward()
    assert all(max_relative_error(replayed[name], p.grad) < 1e-5 for name, p in model.named_parameters())


def test_cuda_tune_compiles_with_cuda_graphs_and_matches_eager(strategy):
    from torch._dynamo.utils import counters

    model = resnet()
    tune.turn_on(model, strategy=strategy)
    x = torch.randn(4, 3, 64, 64, device="cuda")
    _, eager_gx, eager_grads = forward_backward(model, x)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, mode="reduce-overhead")
    for _ in range(3):  # recorded, then replayed
        _, gx, _ = forward_backward(compiled, x)
    grads = {name: p.grad for name, p in model.named_parameters()}  # the compiled module names them _orig_mod.*
    assert not counters["graph_break"], dict(counters["graph_break"])  # one graph: nothing broke it
    assert counters["inductor"]["cudagraph_skips"] == 0  # and CUDA graphs ran it (no CPU input, say)
    assert max_relative_error(gx, eager_gx) < 1e-3
    assert all(max_relative_error(grads[k], eager_grads[k]) < 1e-3 for k in eager_grads)
