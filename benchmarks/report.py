"""What a benchmark run reports: ratios to Eval and Train, the Markdown table, the bar chart, and the JSON document.

Works on the plain records `measure` returns, so figures saved as JSON can be reported again without rerunning.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import matplotlib
import torch
import torchvision

from benchmarks.measure import GRADIENT_KINDS
from experiments.atomic import write_atomically

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RATIO_METRICS = ("kept_mib", "step_peak_mib", "time_ms", "aten_ops")


def add_ratios(results: dict[str, dict]) -> None:
    """Add each ok mode's ratios to Eval, Train and Deploy for kept memory, step peak, time and aten ops (None
    where either figure is unknown)."""
    for base in ("eval", "train", "deploy"):
        ref = results.get(base, {})
        for record in results.values():
            if record["status"] == "ok":
                record[f"vs_{base}"] = {
                    metric: record[metric] / ref[metric] if record.get(metric) and ref.get(metric) else None
                    for metric in RATIO_METRICS
                }


def _figure(value: float | None, fmt: str, record: dict | None = None, metric: str = "") -> str:
    """A table cell: the value formatted, and when a record is given its ratios to Eval / to Train."""
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
    if errors[1] is None:
        return "n/a"
    return " / ".join("n/a" if error is None else f"{error:.1e}" for error in errors)


def format_table(results: dict[str, dict]) -> str:
    """A Markdown table: absolute figures with their ratios to Eval / to Train in parentheses."""
    header = ["mode", "status", "kept MiB", "step peak MiB", "peak MiB", "ms/step [IQR]", "aten ops"]
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
            _figure(r.get("aten_ops"), "{:.0f}", r, "aten_ops"),
            _gradient_cell(r, ""),
            _gradient_cell(r, "f64_"),
            r.get("params_compared", "n/a"),
            r.get("note", ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_precision_table(results: dict[str, dict]) -> str:
    """A Markdown table of each mode's relative L2 gradient error against the float64 reference, per kind of
    tensor: as run, and with the mode's own float64 copy (which shows whether the mode computes Eval's function
    exactly). Empty when no mode's gradients were checked."""
    checked = {name: r for name, r in results.items() if r.get("grad_rel_l2_by_kind")}
    if not checked:
        return ""
    header = ["mode", *(f"{kind} (float64)" for kind in GRADIENT_KINDS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in checked.items():
        as_run, exact = r["grad_rel_l2_by_kind"], r.get("f64_grad_rel_l2_by_kind", {})
        cells = [
            "n/a" if kind not in as_run else f"{as_run[kind]:.1e}" + (f" ({exact[kind]:.0e})" if kind in exact else "")
            for kind in GRADIENT_KINDS
        ]
        lines.append("| " + " | ".join([name, *cells]) + " |")
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


def _nvidia_smi() -> str | None:
    """The GPU, driver and memory as nvidia-smi reports them, or None where it is not installed."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def numerics_flags() -> dict:
    """The settings that change what a float32 GPU step computes or how it is timed: TF32 for convs and matmuls
    (on by default for cuDNN convs on Ampere and later), cuDNN autotuning and determinism."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    flags = {
        "cudnn.allow_tf32": cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn.benchmark": cudnn.benchmark,
        "cudnn.deterministic": cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision"):  # torch >= 2.9
        flags["cudnn.conv.fp32_precision"] = cudnn.conv.fp32_precision
    return flags


def metadata(args: argparse.Namespace, argv: list[str]) -> dict:
    """Where and how the figures were measured."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "nvidia_smi": _nvidia_smi() if cuda else None,
        "numerics": numerics_flags(),
        "threads": torch.get_num_threads(),
        "command": shlex.join(["python", "-m", "benchmarks", *argv]),
        "args": vars(args),
        "peak_memory_source": "torch.cuda.max_memory_allocated (and max_memory_reserved)"
        if cuda
        else "torch.profiler CPU memory events (op-granular)",
    }


def write_json(document: dict, path: Path) -> None:
    """Write the metadata and figures, indented, atomically (a reader never sees half a file); values JSON cannot
    hold (paths) as their strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(document, indent=2, default=str).encode())


def save(path: Path, write: Callable[[Path], None]) -> None:
    """Create the folder of `path`, write the file there with `write`, and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    print(f"wrote {path}")
