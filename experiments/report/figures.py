"""The figures: one panel per PNG, written atomically (accuracy curves per task and method, a bar chart per metric,
the interleaved benchmark's step times)."""

from __future__ import annotations

import io
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.atomic import write_atomically  # noqa: E402
from experiments.report.sweep import CURVE_TAG, METHOD_ORDER, MODE_ORDER, Benchmark, Run, order  # noqa: E402
from experiments.report.table import METRICS, Row  # noqa: E402


def file_name(*parts: str) -> str:
    """A file name from free text: 'M->U' becomes 'M2U', anything else odd becomes '-'."""
    text = "_".join(part.replace("->", "2") for part in parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def _save_figure(fig: plt.Figure, path: Path) -> None:
    try:
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110)
        write_atomically(path, png.getvalue())
    finally:
        plt.close(fig)


def _iters_per_epoch(run: Run) -> int:
    """The run's iterations per epoch, or 0 when its config does not say (then curves are drawn per epoch)."""
    try:
        return max(int(run.config.get("iters_per_epoch") or 0), 0)
    except (TypeError, ValueError):
        return 0


# Eval is drawn wide and pale under the others, so that a Tune curve equal to it stays visibly on top of it.
CURVE_STYLE = {"train": {"marker": "."}, "eval": {"linewidth": 6, "alpha": 0.35}, "tune": {"marker": "."},
               "deploy": {"marker": "x", "linestyle": ":"}}


def _plot_curve(runs: list[Run], path: Path) -> None:
    """Target accuracy over training of one task and method: a line per run, coloured by BN mode."""
    fig, ax = plt.subplots(figsize=(6, 4))
    labelled = set()
    in_iterations = all(_iters_per_epoch(run) for run in runs)
    for run in sorted(runs, key=lambda run: (order(run.mode, MODE_ORDER), run.name)):
        steps, values = zip(*run.scalars[CURVE_TAG], strict=True)
        x = [(step + 1) * _iters_per_epoch(run) for step in steps] if in_iterations else list(steps)
        label = run.mode + ("" if run.finished else " (in progress)")
        style = {**CURVE_STYLE.get(run.mode, {}), **({} if run.finished else {"linestyle": "--"})}
        ax.plot(x, values, color=f"C{order(run.mode, MODE_ORDER)[0]}", label=None if label in labelled else label,
                **style)
        labelled.add(label)
    first = runs[0]
    ax.set_xlabel("training iteration" if in_iterations else "epoch")
    ax.set_ylabel("target accuracy (%)")
    ax.set_title(f"{first.setting('dataset')} {first.setting('task')}, {first.setting('method')}, "
                 f"{first.setting('arch')}: target accuracy during training", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(title="BN mode", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)


def _plot_bars(rows: list[Row], name: str, path: Path) -> None:
    """One metric of one section: a cluster per task and method, a bar per BN mode (error bar: std over seeds)."""
    groups = sorted({row.group for row in rows}, key=lambda g: (g[0], order(g[1], METHOD_ORDER)))
    modes = sorted({row.mode for row in rows}, key=lambda mode: order(mode, MODE_ORDER))
    width = 0.8 / len(modes)
    metrics = {(row.group, row.mode): row.metrics.get(name) for row in rows}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * len(modes) ** 0.5), 4))
    for i, mode in enumerate(modes):
        stats = [metrics.get((group, mode)) for group in groups]
        bars = ax.bar([x + i * width for x in range(len(groups))],
                      [s.mean if s else float("nan") for s in stats],  # NaN: no bar where nothing was logged
                      width, yerr=[s.std if s else 0 for s in stats], label=mode,
                      color=f"C{order(mode, MODE_ORDER)[0]}")
        ax.bar_label(bars, labels=[METRICS[name].fmt.format(s.mean) if s else "" for s in stats], fontsize=7)
    dataset, arch, device = rows[0].section
    ax.set_ylabel(METRICS[name].axis)
    ax.set_xlabel("task, method")
    ax.set_title(f"{dataset}, {arch}, {device}: {METRICS[name].header(device)}", fontsize=9)
    ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(groups))])
    ax.set_xticklabels([" ".join(group) for group in groups], rotation=20, ha="right", fontsize=8)
    ax.legend(title="BN mode", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)


def _plot_benchmark(bench: Benchmark, path: Path) -> None:
    """The interleaved benchmark's median ms/step per BN mode, with its interquartile range."""
    modes = sorted((mode for mode in bench.results if bench.ms(mode) is not None),
                   key=lambda mode: order(mode, MODE_ORDER))
    records = [bench.results[mode] for mode in modes]
    medians = [record["time_ms"] for record in records]
    spread = [[m - record.get("time_ms_q1", m) for m, record in zip(medians, records, strict=True)],
              [record.get("time_ms_q3", m) - m for m, record in zip(medians, records, strict=True)]]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(modes, medians, yerr=spread, color=[f"C{order(mode, MODE_ORDER)[0]}" for mode in modes])
    ax.bar_label(bars, labels=[f"{m:.1f}" for m in medians], fontsize=8)
    ax.set_xlabel("BN mode")
    ax.set_ylabel("training step (ms), median and IQR")
    ax.set_title(f"{bench.model}, {bench.settings}: modes timed in turn", fontsize=9)
    fig.tight_layout()
    _save_figure(fig, path)


def plot(runs: list[Run], rows: list[Row], out_dir: str | Path, benchmarks: list[Benchmark] = ()) -> list[Path]:
    """Write one PNG per task and method (accuracy curves), per section and metric (bars) and per benchmark
    (interleaved step times); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    curves: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        if run.scalars.get(CURVE_TAG):
            curves[run.section, run.group].append(run)
    for (section, group), members in sorted(curves.items()):
        paths.append(out / f"{file_name('accuracy', *section[:2], *group)}.png")
        _plot_curve(members, paths[-1])
    for section in sorted({row.section for row in rows}):
        members = [row for row in rows if row.section == section]
        for name, metric in METRICS.items():
            if metric.figure and any(row.metrics.get(name) for row in members):
                paths.append(out / f"{file_name(metric.figure, *section)}.png")
                _plot_bars(members, name, paths[-1])
    for bench in benchmarks:
        if any(bench.ms(mode) is not None for mode in bench.results):
            paths.append(out / f"{file_name('benchmark_time', bench.model, bench.device)}.png")
            _plot_benchmark(bench, paths[-1])
    return paths
