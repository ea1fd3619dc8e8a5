"""Every check of the survey on one model, in the process that runs it: equality with Eval in float64 (output,
input gradient, every parameter gradient), pairs against the hook-based count, kept memory against Deploy's, and
torch.save / deepcopy after turn_on."""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import tune
from benchmarks.hf_models import hf_model
from benchmarks.models import bns_fed_directly_by_a_conv, random_model, randomize_bn
from tune.layers import is_bn_like

RTOL = 1e-9  # float64: Tune and Deploy agree with Eval to rounding
RTOL_FLOAT32 = 1e-3  # the few models too large for float64 under the memory limit
ERRORS = ("forward_error", "input_grad_error", "grad_error")
KEPT_LIMIT = 1.01  # Tune may keep at most this much more than Deploy for backward
RESOLUTIONS = (32, 64, 96, 128, 160, 224, 299)


class Stages:
    """Which check a model is in, and the seconds each finished check took."""

    def __init__(self) -> None:
        self.now, self.seconds, self._start = "start", {}, time.perf_counter()

    def enter(self, stage: str) -> None:
        end = time.perf_counter()
        self.seconds[self.now] = round(self.seconds.get(self.now, 0.0) + end - self._start, 2)
        self.now, self._start = stage, end
        print(f"stage: {stage}", file=sys.stderr, flush=True)  # the parent reads it when the model runs out of time


def _tensors(output: object) -> list[Tensor]:
    """The floating-point tensors of a model's output, however nested (tuples, lists, dicts)."""
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _run(model: nn.Module, x: Tensor, backward: bool) -> dict:
    """Outputs of one forward and the bytes autograd kept for backward; with `backward`, the input and parameter
    gradients of a fixed loss too."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(0)
    with tune.kept_for_backward(exclude=model) as kept:
        outputs = _tensors(model(x))
    result = {"outputs": [o.detach() for o in outputs], "kept": kept.nbytes}
    if backward:
        sum(((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view(o.shape)).sum() + 0.1 * o.square().sum())
            for o in outputs).backward()
        result["input_grad"] = x.grad
        result["grads"] = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
    return result


def _error(got: Tensor, want: Tensor, floor: float = 1e-300) -> float:
    """max |got - want| / max(max |want|, floor): inf when the shapes differ or a value is not finite."""
    if got.shape != want.shape:
        return float("inf")
    if not want.numel():
        return 0.0
    got, want = got.double(), want.double()
    error = ((got - want).abs().max() / want.abs().max().clamp_min(floor)).item()
    return error if error == error and torch.isfinite(want).all() else float("inf")


def _worst(got: list[Tensor], want: list[Tensor]) -> float:
    """The largest `_error` over a model's outputs (inf when their number differs)."""
    if len(got) != len(want):
        return float("inf")
    return max((_error(g, w) for g, w in zip(got, want, strict=True)), default=0.0)


def _pickles(model: nn.Module, x: Tensor, want: list[Tensor]) -> dict:
    """Errors of a torch.save/torch.load round trip and of a deepcopy: None when the copy runs and computes `want`."""
    checks = {}
    for check in ("save", "deepcopy"):
        try:
            if check == "save":
                with tempfile.TemporaryDirectory() as folder:  # a file, not memory: large models fit the limit
                    torch.save(model, Path(folder) / "model.pt")
                    clone = torch.load(Path(folder) / "model.pt", weights_only=False)
            else:
                clone = copy.deepcopy(model)
            torch.manual_seed(0)
            with torch.no_grad():
                error = _worst(_tensors(clone(x)), want)
            del clone
            checks[check] = None if error <= RTOL else f"output differs by {error:.1e}"
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            checks[check] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return checks


def _resolution(model: nn.Module) -> int:
    """The smallest survey resolution the model runs at in train and in eval mode (batch 2, float32, no gradients),
    else the input size a timm model declares (attention with a fixed grid runs at that size only); train mode may
    update its BN statistics, which are randomised afterwards."""
    failure = None
    declared = getattr(model, "pretrained_cfg", {}).get("input_size", (None,))[-1]
    for size in (*RESOLUTIONS, *([declared] if declared and declared not in RESOLUTIONS else [])):
        try:
            with torch.no_grad():
                for training in (True, False):
                    model.train(training)(torch.randn(2, 3, size, size))
            return size
        except Exception as exc:  # noqa: BLE001 - too small for this model: try the next size
            failure = exc
    raise RuntimeError(f"runs at none of {RESOLUTIONS} nor at its declared input size: {failure}")


def check_model(name: str, stages: Stages, memory_bytes: float, strategy: str = "auto") -> dict:
    """Every check of the survey on one randomly initialised model, converted with tune.turn_on(strategy=...);
    `stages` says how far it got, and how fast.
    Every forward starts from the same seed, so dropout draws the same masks in each mode.

    A model without BatchNorm is only checked to be left alone and to copy after turn_on (in float32, forward only):
    nothing of it is converted."""
    stages.enter("build")
    model = hf_model(name) if name.startswith("hf:") else random_model(name)
    record = {"bn_layers": sum(1 for m in model.modules() if is_bn_like(m)),
              "parameters": sum(p.numel() for p in model.parameters())}
    record["resolution"] = size = _resolution(model)
    x = torch.randn(2, 3, size, size)
    if not record["bn_layers"]:
        return {**record, **_check_left_alone(model, x, stages)}
    randomize_bn(model)  # statistics from data can leave channels with a variance near 0: ill-conditioned
    stages.enter("hook count")
    eligible = bns_fed_directly_by_a_conv(model, x)
    # Eval mode as fine-tuning uses it: BNs on running statistics, the rest (dropout, timm's caches) in train mode.
    # float64, unless the model and two sets of gradients would not fit in half the memory limit.
    dtype = torch.float64 if 3 * 8 * record["parameters"] < memory_bytes / 2 else torch.float32
    record.update(dtype=str(dtype).removeprefix("torch."), rtol=RTOL if dtype == torch.float64 else RTOL_FLOAT32)
    model, x = model.to(dtype).train(), x.to(dtype)
    tune.freeze_bn_stats(model)
    stages.enter("eval")
    reference = _run(model, x, backward=True)
    stages.enter("eval copies")
    record["eval_copies"] = _pickles(model, x, reference["outputs"])  # a model that cannot be saved untouched
    stages.enter("turn_on")
    report = tune.turn_on(model, strategy=strategy)
    converted = {bn for _, bn in report.pairs}
    reasons = dict(report.skipped)
    record.update(pairs=len(report.pairs), skipped=report.skipped, hook_count=len(eligible),
                  missed={bn: reasons.get(bn, "not reported") for bn in sorted(eligible - converted)},
                  extra=sorted(converted - eligible))
    stages.enter("tune")
    tuned = _run(model, x, backward=True)
    record.update(_errors(tuned, reference), kept_eval=reference["kept"], kept_tune=tuned["kept"])
    if max(record[k] for k in ERRORS) > RTOL:
        stages.enter("rounding noise")
        record["rounding_noise"] = _rounding_noise(model, x, reference, strategy)
    del reference
    stages.enter("tune copies")
    record["tune_copies"] = _pickles(model, x, tuned["outputs"])
    stages.enter("deploy")
    tune.turn_on(model, mode="deploy")
    deployed = _run(model, x, backward=False)
    record.update(kept_deploy=deployed["kept"], deploy_error=_worst(deployed["outputs"], tuned["outputs"]))
    stages.enter("deploy copies")
    record["deploy_copies"] = _pickles(model, x, deployed["outputs"])
    return record


def _errors(got: dict, want: dict) -> dict[str, float]:
    """How far one forward/backward is from another: outputs, input gradient, the worst parameter gradient."""
    grads, wanted = got["grads"], want["grads"]
    # A parameter whose gradient is a million times smaller than the largest holds rounding noise: compare it to that.
    floor = 1e-6 * max((g.abs().max().item() for g in wanted.values()), default=0.0)
    worst_grad = max((_error(grads[k], wanted[k], floor) for k in wanted), default=0.0)
    return {"forward_error": _worst(got["outputs"], want["outputs"]),
            "input_grad_error": _error(got["input_grad"], want["input_grad"]),
            "grad_error": worst_grad if grads.keys() == wanted.keys() else float("inf")}


NOISE_SAMPLES = 3  # draws of Eval's rounding noise; the largest is the limit


def _rounding_noise(model: nn.Module, x: Tensor, reference: dict, strategy: str) -> dict[str, float]:
    """How far Eval itself moves, at most over NOISE_SAMPLES tries, when every BN variance changes by a random
    relative 1e-14 (some 50 float64 roundings): a deep random network can amplify rounding past RTOL, and Tune's own
    roundings are then measured against this spread, not against one draw of it."""
    tuned = tune.turn_off(model)
    generator = torch.Generator().manual_seed(1)
    variances = [m.running_var for m in model.modules() if is_bn_like(m) and m.running_var is not None]
    saved = [v.clone() for v in variances]
    noise: dict[str, float] = {}
    for _ in range(NOISE_SAMPLES):
        with torch.no_grad():
            for v, old in zip(variances, saved, strict=True):
                v.copy_(old).mul_(1 + 1e-14 * (2 * torch.rand(v.shape, generator=generator, dtype=v.dtype) - 1))
        sample = _errors(_run(model, x, backward=True), reference)
        noise = {k: max(noise.get(k, 0.0), value) for k, value in sample.items()}
    with torch.no_grad():
        for v, old in zip(variances, saved, strict=True):
            v.copy_(old)
    if tuned:
        tune.turn_on(model, strategy=strategy)
    return noise


def _check_left_alone(model: nn.Module, x: Tensor, stages: Stages) -> dict:
    """turn_on in either mode changes nothing in a model without BatchNorm, and the model still copies."""
    record = {}
    model.eval()
    with torch.no_grad():
        want = _tensors(model(x))
    for mode in tune.MODES:
        stages.enter(mode)
        report = tune.turn_on(model, mode=mode)
        record.update(pairs=len(report.pairs), skipped=report.skipped)
        record[f"{mode}_copies"] = _pickles(model, x, want)
    return record
