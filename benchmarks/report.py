"""What a benchmark run reports: ratios to Eval and Train, the Markdown table, the bar chart, and the JSON document.

Works on the plain records `measure` returns, so figures saved as JSON can be reported again without rerunning.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
from collections.abc import Callable
from pathlib import Path

import matplotlib
import torch
import torchvision

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
    return "n/a" if None in errors else " / ".join(f"{error:.1e}" for error in errors)


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
        "command": shlex.join(["python", "-m", "benchmarks", *argv]),
        "args": vars(args),
        "peak_memory_source": "torch.cuda.max_memory_allocated"
        if device.type == "cuda"
        else "torch.profiler CPU memory events (op-granular)",
    }


def write_json(document: dict, path: Path) -> None:
    """Write the metadata and figures, indented; values JSON cannot hold (paths) as their strings."""
    path.write_text(json.dumps(document, indent=2, default=str))


def save(path: Path, write: Callable[[Path], None]) -> None:
    """Create the folder of `path`, write the file there with `write`, and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    print(f"wrote {path}")
