"""The measurements: kept-for-backward bytes, step peak and resident memory, step times, aten ops per step, and
gradient errors.

Every figure comes from training steps on the same batch, one Bench per mode, so that the modes differ only in how
their model was prepared.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

import tune
from benchmarks import workloads
from benchmarks.modes import MODES, Bench, prepare
from benchmarks.workloads import Batch
from experiments import memory
from experiments.memory import MIB
from experiments.utils import synchronize
from tune.layers import is_bn_like, is_conv_like

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def forward_loss(bench: Bench, batch: Batch, cast: AbstractContextManager) -> Tensor:
    """The batch's loss under the mode's runnable (and autocast when asked); grads are cleared first."""
    bench.model.zero_grad(set_to_none=True)
    batch.zero_grad()
    with cast:
        return batch.loss(bench.run)


def train_step(bench: Bench, batch: Batch, cast: AbstractContextManager, optimize: bool = True) -> None:
    """Forward, backward and, when the bench has an optimizer and `optimize`, an SGD step."""
    forward_loss(bench, batch, cast).backward()
    if optimize and bench.optimizer:
        bench.optimizer.step()


def gradients(bench: Bench, batch: Batch, cast: AbstractContextManager) -> dict[str, Tensor]:
    """Gradients of one step's loss: every parameter's by name, and the input's as 'input'."""
    train_step(bench, batch, cast, optimize=False)
    grads = {
        name: p.grad.to(torch.float64, copy=True) for name, p in bench.model.named_parameters() if p.grad is not None
    }
    return {**grads, **batch.input_grads()}


def max_relative_error(grads: dict[str, Tensor], reference: dict[str, Tensor]) -> float | None:
    """Largest normwise relative error max|g - r| / max|r| over the tensors named in both dicts (None: none)."""
    tiny = torch.finfo(torch.float64).tiny
    errors = [
        ((g.double() - reference[name]).abs().max() / reference[name].abs().max().clamp_min(tiny)).item()
        for name, g in grads.items()
        if name in reference
    ]
    return max(errors, default=None)


GRADIENT_KINDS = ("conv weight", "BN gamma", "BN beta", "other", "input")


def gradient_kinds(model: nn.Module) -> dict[str, str]:
    """Each parameter's kind for the per-kind error figures: the weight of a conv or linear layer, a BN's gamma or
    beta, or any other parameter (conv biases, heads' other parameters)."""
    kinds = {}
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            if is_conv_like(module) and name == "weight":
                kind = "conv weight"
            elif is_bn_like(module) and name in ("weight", "bias"):
                kind = "BN gamma" if name == "weight" else "BN beta"
            else:
                kind = "other"
            kinds[f"{module_name}.{name}" if module_name else name] = kind
    return {**kinds, "input": "input"}


def relative_l2_error(grads: dict[str, Tensor], reference: dict[str, Tensor]) -> float | None:
    """||g - r|| / ||r|| over all the tensors named in both dicts taken together: unlike the largest elementwise
    error, a few ReLU or max-pool decisions that rounding flips barely move it, so it shows the arithmetic."""
    names = [name for name in grads if name in reference]
    if not names:
        return None
    error = sum((grads[n].double() - reference[n]).square().sum() for n in names)
    size = sum(reference[n].square().sum() for n in names)
    return (error / size.clamp_min(torch.finfo(torch.float64).tiny)).sqrt().item()


def compare(grads: dict[str, Tensor], ref_grads: dict[str, Tensor], params: set[str], kinds: dict[str, str]) -> dict:
    """Max relative errors of the gradients of the parameters named in `params` and of the input's, and the
    relative L2 error per kind of tensor (GRADIENT_KINDS; kinds with nothing compared are left out)."""
    compared = {name: grad for name, grad in grads.items() if name in params}
    with_input = {**compared, "input": grads["input"]}
    by_kind = {
        kind: relative_l2_error({n: g for n, g in with_input.items() if kinds.get(n) == kind}, ref_grads)
        for kind in GRADIENT_KINDS
    }
    return {
        "param_grad_rel_err": max_relative_error(compared, ref_grads),
        "input_grad_rel_err": max_relative_error({"input": grads["input"]}, ref_grads),
        "grad_rel_l2_by_kind": {kind: error for kind, error in by_kind.items() if error is not None},
        "params_compared": f"{len(compared)}/{len(ref_grads) - 1}",
    }


def gradient_errors(
    bench: Bench, reference: nn.Module, ref_grads: dict[str, Tensor], batch: Batch, cast: AbstractContextManager
) -> dict:
    """Errors of the mode's gradients versus the float64 reference, over the parameters the mode left as they
    were (Deploy's folded conv weights are new parameters, so they are not compared) and the input."""
    ref_params = dict(reference.named_parameters())
    unchanged = {
        name
        for name, p in bench.model.named_parameters()
        if name in ref_params and torch.equal(p.detach().double(), ref_params[name].detach())
    }
    return compare(gradients(bench, batch, cast), ref_grads, unchanged, gradient_kinds(reference))


def kept_mib(bench: Bench, batch: Batch, cast: AbstractContextManager) -> float:
    """MiB of distinct storages autograd keeps for backward in one forward, the model's own tensors excluded."""
    with tune.kept_for_backward(exclude=bench.model) as kept:
        loss = forward_loss(bench, batch, cast)
    loss.backward()
    return kept.nbytes / MIB


def resident_mib(bench: Bench, batch: Batch) -> float:
    """MiB the mode holds between steps: its parameters, buffers, optimizer state and the batch."""
    state = bench.optimizer.state.values() if bench.optimizer else []
    tensors = [*bench.model.parameters(), *bench.model.buffers(), *batch.tensors]
    tensors += [t for per_param in state for t in per_param.values() if torch.is_tensor(t)]
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values()) / MIB


def step_peak_mib(bench: Bench, batch: Batch, cast: AbstractContextManager, device: torch.device) -> float:
    """Peak MiB allocated during one training step above what was allocated before it (gradients included)."""
    bench.model.zero_grad(set_to_none=True)
    batch.zero_grad()
    return memory.step_peak_mib(lambda: train_step(bench, batch, cast), device)[1]


def aten_ops_per_step(bench: Bench, batch: Batch, cast: AbstractContextManager) -> int:
    """aten ops torch.profiler records in one step, nested ones included: what a step pays per op on the host."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(bench, batch, cast)
    return sum(event.name.startswith("aten::") for event in prof.events())


def timed_step_ms(bench: Bench, batch: Batch, cast: AbstractContextManager, device: torch.device) -> float:
    """Wall-clock milliseconds of one training step, synchronising CUDA before and after."""
    synchronize(device)
    start = time.perf_counter()
    train_step(bench, batch, cast)
    synchronize(device)
    return 1000 * (time.perf_counter() - start)


def check_gradients(benches: list[Bench], base: nn.Module, batch: Batch, cast: AbstractContextManager,
                    device: torch.device) -> None:
    """Record each Eval-function mode's gradient errors against a float64 copy of `base` in Eval mode: as run, and
    with the mode's own copy in float64 ('f64_' keys). Errors as run are dominated by ReLU and max-pool decisions
    that rounding flips, whatever the mode; in float64 none flip, so they show whether the mode is exact."""
    model64 = copy.deepcopy(base).double()
    exact = torch.autocast(device.type, enabled=False)
    batch64 = batch.float64()
    ref_grads = gradients(Bench("reference", model64, model64), batch64, exact)
    for bench in benches:
        if MODES[bench.name].eval_function and bench.status == "ok":
            bench.result.update(bench.attempt(gradient_errors, bench, model64, ref_grads, batch, cast) or {})
            twin = prepare(bench.name, model64, optimizer_step=False)
            errors = twin.attempt(gradient_errors, twin, model64, ref_grads, batch64, exact) or {}
            bench.result.update({f"f64_{key}": value for key, value in errors.items() if key != "params_compared"})


def measure_memory(bench: Bench, batch: Batch, cast: AbstractContextManager, warmup: int,
                   device: torch.device) -> None:
    """Record kept-for-backward bytes (where hooks see them), then after warm-up (first-use workspaces and cuDNN's
    algorithm search are behind) the step peak, resident state and aten ops per step."""
    if not MODES[bench.name].compiled:
        bench.result["kept_mib"] = bench.attempt(kept_mib, bench, batch, cast)
    for _ in range(warmup):
        bench.attempt(train_step, bench, batch, cast)
    bench.result["step_peak_mib"] = bench.attempt(step_peak_mib, bench, batch, cast, device)
    if device.type == "cuda":  # the allocator's peak reservation in that step (reset with the allocated peak)
        bench.result["step_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MIB
    bench.result["resident_mib"] = bench.attempt(resident_mib, bench, batch)
    bench.result["aten_ops"] = bench.attempt(aten_ops_per_step, bench, batch, cast)


def time_round_robin(benches: list[Bench], batch: Batch, cast: AbstractContextManager, reps: int,
                     device: torch.device) -> None:
    """Time `reps` steps per mode, one mode after the other in turn, so drifts in machine load hit all alike."""
    for _ in range(reps):
        for bench in benches:
            elapsed = bench.attempt(timed_step_ms, bench, batch, cast, device)
            if elapsed is not None:
                bench.times_ms.append(elapsed)


def measure(args: argparse.Namespace, progress: Callable[[dict[str, dict]], None] = lambda results: None
            ) -> dict[str, dict]:
    """Run every requested mode and return its status and figures, keyed by mode name; `progress` receives the
    figures so far after every stage (gradient check, each mode's memory, timing)."""
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    base, batch = workloads.build(args.model, args.batch_size, args.resolution, device, args.task)
    cast = torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(args.dtype), enabled=args.dtype in AUTOCAST_DTYPES)
    benches = [prepare(name, base, args.optimizer_step) for name in args.modes]

    def results() -> dict[str, dict]:
        return {bench.name: summarize(bench) for bench in benches}

    if batch.float64 is not None and not args.no_grad_check:  # a detector in float64 takes too long
        check_gradients(benches, base, batch, cast, device)  # first: no optimizer step has changed the weights yet
        progress(results())
    for bench in benches:
        measure_memory(bench, batch, cast, args.warmup, device)
        progress(results())
    time_round_robin(benches, batch, cast, args.reps, device)
    return results()


def summarize(bench: Bench) -> dict:
    """The bench's JSON record: status, figures (None when not measured) and the raw step times."""
    if bench.status != "ok":
        return {"status": bench.status}
    record = {"status": "ok", **bench.result, "times_ms": bench.times_ms}
    if record.get("step_peak_mib") is not None and record.get("resident_mib") is not None:
        record["peak_mib"] = record["step_peak_mib"] + record["resident_mib"]
    times = bench.times_ms
    if times:
        q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
        record.update(time_ms=median, time_ms_q1=q1, time_ms_q3=q3)
    return record
