"""Benchmark one model's training step in every BN mode, and against Tune mode's peers (issue 5).

    python -m experiments.benchmark --model resnet50 --batch-size 16 --resolution 160 --dtype float32 \
        --device cuda --reps 30 --warmup 3 [--optimizer-step] [--modes ...] [--json out.json] [--png out.png]

Every mode trains its own deep copy of one randomly initialised model (torchvision name, or timm:NAME) whose BN
layers hold real running statistics and non-trivial affine parameters, on the same batch. Per mode: the bytes
autograd keeps for backward, the step's peak memory, the step time (modes interleaved round-robin after warm-up)
and the gradient errors against a float64 Eval-mode reference, both as run and with the mode itself in float64.
The input requires grad in every mode alike, so that its gradient can be checked too. fp16 runs without loss
scaling, so its gradient errors include underflow; on CUDA, float32 convolutions use TF32 as PyTorch's default.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import itertools
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import matplotlib
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

import tune

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIB = 2**20
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
RATIO_METRICS = ("kept_mib", "step_peak_mib", "time_ms")


@dataclass(frozen=True)
class Mode:
    """How a fresh model copy becomes this mode's runnable (returned with a note), and what the mode needs."""

    prepare: Callable[[nn.Module], tuple[Callable[[Tensor], Tensor], str]]
    missing: Callable[[], bool] = lambda: False  # True when the peer is not installed
    compiled: bool = False  # compiled graphs keep saved tensors where autograd hooks cannot see them
    eval_function: bool = True  # computes Eval mode's function, so its gradients compare to the reference


def _train(model: nn.Module) -> tuple[nn.Module, str]:
    return model.train(), "BN batch statistics"


def _eval(model: nn.Module) -> tuple[nn.Module, str]:
    return model.eval(), "BN running statistics"


def _tune(mode: str, model: nn.Module) -> tuple[nn.Module, str]:
    report = tune.turn_on(model.eval(), mode=mode)
    return model, f"{len(report.pairs)} pairs, {len(report.skipped)} BN left alone"


def _mmengine(model: nn.Module) -> tuple[nn.Module, str]:
    from mmengine.model.efficient_conv_bn_eval import (
        efficient_conv_bn_eval_control,
        turn_on_efficient_conv_bn_eval_for_single_model,
    )

    turn_on_efficient_conv_bn_eval_for_single_model(model.eval())
    graph = model.forward.__self__.graph  # the traced GraphModule whose forward replaced the model's
    pairs = sum(node.target is efficient_conv_bn_eval_control for node in graph.nodes)
    return model, f"{pairs} pairs"


def _compiled(options: dict, model: nn.Module) -> tuple[Callable[[Tensor], Tensor], str]:
    return torch.compile(model.eval(), options=options), " ".join(["inductor", *options])


MODES = {
    "train": Mode(_train, eval_function=False),
    "eval": Mode(_eval),
    "tune": Mode(partial(_tune, "tune")),
    "deploy": Mode(partial(_tune, "deploy")),
    "mmengine": Mode(_mmengine, missing=lambda: importlib.util.find_spec("mmengine") is None),
    "compile": Mode(partial(_compiled, {}), compiled=True),
    "compile+inductor-convbn": Mode(
        partial(_compiled, {"efficient_conv_bn_eval_fx_passes": True}),
        missing=lambda: not hasattr(torch._inductor.config, "efficient_conv_bn_eval_fx_passes"),
        compiled=True,
    ),
}


@dataclass
class Bench:
    """One mode's model copy, what runs it, its optimizer, and its status and measurements."""

    name: str
    model: nn.Module | None = None
    run: Callable[[Tensor], Tensor] | None = None
    optimizer: torch.optim.Optimizer | None = None
    status: str = "ok"
    result: dict = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)

    def attempt(self, fn: Callable, *args: object) -> object:
        """Call fn(*args) unless this mode already failed; a crash marks it 'failed: <reason>' instead of raising."""
        if self.status != "ok":
            return None
        try:
            return fn(*args)
        except Exception as error:  # a peer may crash on any model; the others must still be measured
            reason = (str(error).strip().splitlines() or [""])[0][:160]
            self.status = f"failed: {type(error).__name__}: {reason}"
            return None


def build_model(name: str) -> nn.Module:
    """A randomly initialised model: a torchvision classification model, or timm's when named 'timm:NAME'."""
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name.removeprefix("timm:"), pretrained=False)
    return torchvision.models.get_model(name, weights=None)


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: Tensor, batches: int = 2) -> nn.Module:
    """Randomise BN affine parameters, then set running statistics to the true batch statistics of random inputs,
    so folding is tested on non-trivial values while activations stay well scaled (fp16 included)."""
    model.train()
    bns = [module for module in model.modules() if isinstance(module, BN_TYPES) and module.track_running_stats]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    for _ in range(batches):
        model(torch.randn_like(x))
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    return model.eval()


def prepare(name: str, base: nn.Module, optimizer_step: bool) -> Bench:
    """A deep copy of `base` converted to mode `name`, or a Bench saying why it cannot run."""
    mode, bench = MODES[name], Bench(name)
    if mode.missing():
        bench.status = "not installed"
        return bench
    bench.model = copy.deepcopy(base)
    prepared = bench.attempt(mode.prepare, bench.model)
    if prepared:
        bench.run, bench.result["note"] = prepared
        if optimizer_step:
            bench.optimizer = torch.optim.SGD(bench.model.parameters(), lr=1e-3, momentum=0.9)
    return bench


def forward_loss(bench: Bench, x: Tensor, y: Tensor, cast: AbstractContextManager) -> Tensor:
    """Cross-entropy of the mode's forward (under autocast when asked); grads are cleared first."""
    bench.model.zero_grad(set_to_none=True)
    x.grad = None
    with cast:
        return F.cross_entropy(bench.run(x).float(), y)


def train_step(bench: Bench, x: Tensor, y: Tensor, cast: AbstractContextManager, optimize: bool = True) -> None:
    """Forward, backward and, when the bench has an optimizer and `optimize`, an SGD step."""
    forward_loss(bench, x, y, cast).backward()
    if optimize and bench.optimizer:
        bench.optimizer.step()


def gradients(bench: Bench, x: Tensor, y: Tensor, cast: AbstractContextManager) -> dict[str, Tensor]:
    """Gradients of one step's loss: every parameter's by name, and the input's as 'input'."""
    train_step(bench, x, y, cast, optimize=False)
    grads = {
        name: p.grad.to(torch.float64, copy=True) for name, p in bench.model.named_parameters() if p.grad is not None
    }
    return {**grads, "input": x.grad.to(torch.float64, copy=True)}


def max_relative_error(grads: dict[str, Tensor], reference: dict[str, Tensor]) -> float:
    """Largest normwise relative error max|g - r| / max|r| over the tensors named in both dicts."""
    tiny = torch.finfo(torch.float64).tiny
    errors = [
        ((g.double() - reference[name]).abs().max() / reference[name].abs().max().clamp_min(tiny)).item()
        for name, g in grads.items()
        if name in reference
    ]
    return max(errors, default=float("nan"))


def compare(grads: dict[str, Tensor], ref_grads: dict[str, Tensor], params: set[str]) -> dict:
    """Max relative errors of the gradients of the parameters named in `params`, and of the input's."""
    compared = {name: grad for name, grad in grads.items() if name in params}
    return {
        "param_grad_rel_err": max_relative_error(compared, ref_grads),
        "input_grad_rel_err": max_relative_error({"input": grads["input"]}, ref_grads),
        "params_compared": f"{len(compared)}/{len(ref_grads) - 1}",
    }


def gradient_errors(
    bench: Bench, reference: nn.Module, ref_grads: dict[str, Tensor], x: Tensor, y: Tensor, cast: AbstractContextManager
) -> dict:
    """Errors of the mode's gradients versus the float64 reference, over the parameters the mode left as they
    were (Deploy's folded conv weights are new parameters, so they are not compared) and the input."""
    ref_params = dict(reference.named_parameters())
    unchanged = {
        name
        for name, p in bench.model.named_parameters()
        if name in ref_params and torch.equal(p.detach().double(), ref_params[name].detach())
    }
    return compare(gradients(bench, x, y, cast), ref_grads, unchanged)


def kept_mib(bench: Bench, x: Tensor, y: Tensor, cast: AbstractContextManager) -> float:
    """MiB of distinct storages autograd keeps for backward in one forward, the model's own tensors excluded."""
    with tune.kept_for_backward(exclude=bench.model) as kept:
        loss = forward_loss(bench, x, y, cast)
    loss.backward()
    return kept.nbytes / MIB


def resident_mib(bench: Bench, x: Tensor, y: Tensor) -> float:
    """MiB the mode holds between steps: its parameters, buffers, optimizer state and the batch."""
    state = bench.optimizer.state.values() if bench.optimizer else []
    tensors = [*bench.model.parameters(), *bench.model.buffers(), x, y]
    tensors += [t for per_param in state for t in per_param.values() if torch.is_tensor(t)]
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values()) / MIB


def step_peak_mib(bench: Bench, x: Tensor, y: Tensor, cast: AbstractContextManager) -> float:
    """Peak MiB allocated during one step above what was allocated before it (gradients included): CUDA's
    allocator counter, or on CPU the running sum of torch.profiler's memory events (op-granular)."""
    bench.model.zero_grad(set_to_none=True)
    x.grad = None
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        train_step(bench, x, y, cast)
        torch.cuda.synchronize(x.device)
        return (torch.cuda.max_memory_allocated(x.device) - before) / MIB
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_step(bench, x, y, cast)
    events = sorted(prof.events(), key=lambda event: event.time_range.start)
    return max(itertools.accumulate((e.self_cpu_memory_usage for e in events), initial=0)) / MIB


def timed_step_ms(bench: Bench, x: Tensor, y: Tensor, cast: AbstractContextManager) -> float:
    """Wall-clock milliseconds of one training step, synchronising CUDA before and after."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    train_step(bench, x, y, cast)
    sync()
    return 1000 * (time.perf_counter() - start)


def check_gradients(benches: list[Bench], base: nn.Module, x: Tensor, y: Tensor, cast: AbstractContextManager) -> None:
    """Record each Eval-function mode's gradient errors against a float64 copy of `base` in Eval mode: as run, and
    with the mode's own copy in float64 ('f64_' keys). Errors as run are dominated by ReLU and max-pool decisions
    that rounding flips, whatever the mode; in float64 none flip, so they show whether the mode is exact."""
    model64 = copy.deepcopy(base).double()
    exact = torch.autocast(x.device.type, enabled=False)
    x64 = x.detach().double().requires_grad_()
    ref_grads = gradients(Bench("reference", model64, model64), x64, y, exact)
    for bench in benches:
        if MODES[bench.name].eval_function and bench.status == "ok":
            bench.result.update(bench.attempt(gradient_errors, bench, model64, ref_grads, x, y, cast) or {})
            twin = prepare(bench.name, model64, optimizer_step=False)
            errors = twin.attempt(gradient_errors, twin, model64, ref_grads, x64, y, exact) or {}
            bench.result.update({f"f64_{key}": value for key, value in errors.items() if key != "params_compared"})


def measure_memory(bench: Bench, x: Tensor, y: Tensor, cast: AbstractContextManager, warmup: int) -> None:
    """Record kept-for-backward bytes (where hooks see them), then after warm-up the step peak and resident state."""
    if not MODES[bench.name].compiled:
        bench.result["kept_mib"] = bench.attempt(kept_mib, bench, x, y, cast)
    for _ in range(warmup):
        bench.attempt(train_step, bench, x, y, cast)
    bench.result["step_peak_mib"] = bench.attempt(step_peak_mib, bench, x, y, cast)
    bench.result["resident_mib"] = bench.attempt(resident_mib, bench, x, y)


def time_round_robin(benches: list[Bench], x: Tensor, y: Tensor, cast: AbstractContextManager, reps: int) -> None:
    """Time `reps` steps per mode, one mode after the other in turn, so drifts in machine load hit all alike."""
    for _ in range(reps):
        for bench in benches:
            elapsed = bench.attempt(timed_step_ms, bench, x, y, cast)
            if elapsed is not None:
                bench.times_ms.append(elapsed)


def measure(args: argparse.Namespace) -> dict[str, dict]:
    """Run every requested mode and return its status and figures, keyed by mode name."""
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    shape = (args.batch_size, 3, args.resolution, args.resolution)
    x = torch.randn(shape, device=device, requires_grad=True)
    base = calibrate_bn(build_model(args.model).to(device), x.detach())
    with torch.no_grad():
        y = torch.randint(base(x[:1]).shape[-1], (args.batch_size,), device=device)
    cast = torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(args.dtype), enabled=args.dtype in AUTOCAST_DTYPES)
    benches = [prepare(name, base, args.optimizer_step) for name in args.modes]
    check_gradients(benches, base, x, y, cast)  # first: no optimizer step has changed the weights yet
    for bench in benches:
        measure_memory(bench, x, y, cast, args.warmup)
    time_round_robin(benches, x, y, cast, args.reps)
    return {bench.name: summarize(bench) for bench in benches}


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


def add_ratios(results: dict[str, dict]) -> None:
    """Add each ok mode's ratios to Eval and to Train for kept memory, step peak and time (None if unknown)."""
    for base in ("eval", "train"):
        ref = results.get(base, {})
        for record in results.values():
            if record["status"] == "ok":
                record[f"vs_{base}"] = {
                    metric: record[metric] / ref[metric] if record.get(metric) and ref.get(metric) else None
                    for metric in RATIO_METRICS
                }


def _figure(value: float | None, fmt: str, record: dict | None = None, metric: str = "") -> str:
    if value is None:
        return "n/a"
    text = fmt.format(value)
    if record is not None:
        ratios = [record.get(f"vs_{base}", {}).get(metric) for base in ("eval", "train")]
        text += " (" + " / ".join("-" if r is None else f"{r:.2f}" for r in ratios) + ")"
    return text


def _gradient_cell(record: dict, prefix: str) -> str:
    """'param error / input error' of the run (prefix '') or of the float64 twin (prefix 'f64_')."""
    errors = [record.get(f"{prefix}{part}_grad_rel_err") for part in ("param", "input")]
    return "n/a" if None in errors else " / ".join(f"{error:.1e}" for error in errors)


def format_table(results: dict[str, dict]) -> str:
    """A Markdown table: absolute figures with their ratios to Eval / to Train in parentheses."""
    header = ["mode", "status", "kept MiB", "step peak MiB", "peak MiB", "ms/step [IQR]"]
    header += ["grad err param / input", "same in float64", "params compared", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        if r["status"] != "ok":
            lines.append(f"| {name} | {r['status']} |" + " |" * (len(header) - 2))
            continue
        spread = f" [{r['time_ms_q1']:.1f}-{r['time_ms_q3']:.1f}]" if "time_ms" in r else ""
        cells = [
            name,
            "ok",
            _figure(r.get("kept_mib"), "{:.1f}", r, "kept_mib"),
            _figure(r.get("step_peak_mib"), "{:.1f}", r, "step_peak_mib"),
            _figure(r.get("peak_mib"), "{:.1f}"),
            _figure(r.get("time_ms"), "{:.1f}", r, "time_ms") + spread,
            _gradient_cell(r, ""),
            _gradient_cell(r, "f64_"),
            r.get("params_compared", "n/a"),
            r.get("note", ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _iqr_errors(records: list[dict]) -> list[list[float]]:
    """Matplotlib's asymmetric error bars from the median down to Q1 and up to Q3 of the step times."""
    timed = [r if "time_ms" in r else {"time_ms": 0, "time_ms_q1": 0, "time_ms_q3": 0} for r in records]
    return [[r["time_ms"] - r["time_ms_q1"] for r in timed], [r["time_ms_q3"] - r["time_ms"] for r in timed]]


def plot(results: dict[str, dict], path: Path) -> None:
    """Bar chart of kept memory, step peak memory and step time (with IQR) for the modes that ran."""
    ok = {name: r for name, r in results.items() if r["status"] == "ok"}
    panels = (("kept_mib", "kept for backward (MiB)"), ("step_peak_mib", "step peak (MiB)"), ("time_ms", "ms/step"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        values = [r[metric] if r.get(metric) is not None else float("nan") for r in ok.values()]
        errors = _iqr_errors(list(ok.values())) if metric == "time_ms" else None
        ax.bar(list(ok), values, yerr=errors, color=[f"C{i}" for i in range(len(ok))])
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def metadata(args: argparse.Namespace, argv: list[str]) -> dict:
    """Where and how the figures were measured."""
    device = torch.device(args.device)
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "command": shlex.join(["python", "-m", "experiments.benchmark", *argv]),
        "args": vars(args),
        "peak_memory_source": "torch.cuda.max_memory_allocated"
        if device.type == "cuda"
        else "torch.profiler CPU memory events (op-granular)",
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="torchvision model name, or timm:NAME")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--dtype", choices=["float32", *AUTOCAST_DTYPES], default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=20, help="timed steps per mode, interleaved round-robin")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per mode first")
    parser.add_argument("--optimizer-step", action="store_true", help="time an SGD step too")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write metadata and every figure here")
    parser.add_argument("--png", type=Path, help="write a bar chart here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point: measure, print the table, write the JSON and the PNG when asked; returns the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    results = measure(args)
    add_ratios(results)
    print(format_table(results))
    output = {"meta": metadata(args, argv), "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(output, indent=2, default=str))
        print(f"wrote {args.json}")
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        plot(results, args.png)
        print(f"wrote {args.png}")
    return output


if __name__ == "__main__":
    main()
