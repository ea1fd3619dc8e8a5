"""Detection runs (experiments.detection) in the shape of the paper's MMDetection table: per task, detector,
backbone and device, the backbone's BN modes with COCO mAP, memory and time, each with its change versus Eval, and
a bar chart per figure."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments import layout  # noqa: E402
from experiments.report.figures import _save_figure, file_name  # noqa: E402
from experiments.report.sweep import Run, order  # noqa: E402
from experiments.report.table import Stat, _stat, run_metrics  # noqa: E402

METHOD = "detection"
MAP_TAG, MAP50_TAG, CURVE50_TAG = layout.BEST_MAP, layout.BEST_MAP50, layout.MAP50
SCALARS = (MAP_TAG, MAP50_TAG, CURVE50_TAG)
MODE_ORDER = ("eval", "tune", "train", "frozen", "deploy")  # Eval -> Tune first, as the paper's table
# name: (header, format, change in points (x100) rather than percent, chart's axis label)
COLUMNS = {
    "map50": ("mAP@.5", "{:.4f}", True, "best mAP@.5 on the test split"),
    "map": ("mAP@[.5:.95]", "{:.4f}", True, "best COCO mAP@[.5:.95]"),
    "kept_mib": ("kept for backward MiB", "{:.2f}", False, "kept for backward in one step (MiB)"),
    "step_peak_mib": ("step peak MiB (probe step)", "{:.2f}", False, "step peak of the probe step (MiB)"),
    "iter_s": ("s/iter (separate runs)", "{:.3f}", False, "time per iteration (s), separate runs"),
}
Section = tuple[str, str, str, str]  # task, detector, backbone, device


def is_detection(run: Run) -> bool:
    return run.config.get("method") == METHOD


def _section(run: Run) -> Section:
    return run.setting("task"), run.setting("detector"), run.setting("arch"), run.device


def _metrics(run: Run) -> dict[str, float | None]:
    series, shared = run.scalars, run_metrics(run)
    own = {name: series[tag][-1][1] if tag in series else None for name, tag in (("map50", MAP50_TAG),
                                                                                ("map", MAP_TAG))}
    return {**own, **{name: shared[name] for name in ("kept_mib", "step_peak_mib", "iter_s")}}


def summarize(runs: list[Run]) -> dict[Section, dict[str, dict[str, Stat | None]]]:
    """Per section and BN mode, each figure's mean and std over the finished seeds."""
    collected: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        if is_detection(run) and run.finished:
            collected[_section(run), run.mode].append(_metrics(run))
    table: dict[Section, dict[str, dict[str, Stat | None]]] = defaultdict(dict)
    for (section, mode), per_run in collected.items():
        table[section][mode] = {name: _stat([m[name] for m in per_run if m[name] is not None]) for name in COLUMNS}
        table[section][mode]["seeds"] = Stat(len(per_run), 0.0, 1)
    return dict(table)


def _cell(name: str, stat: Stat | None, base: Stat | None) -> str:
    """'value (change vs Eval)': mAP in points x100, the rest in percent."""
    header, fmt, in_points, _ = COLUMNS[name]
    if stat is None:
        return "-"
    text = fmt.format(stat.mean) + (f" ± {fmt.format(stat.std)}" if stat.n > 1 else "")
    if base is not None and (in_points or base.mean):
        change = 100 * (stat.mean - base.mean) if in_points else 100 * (stat.mean / base.mean - 1)
        text += f" ({change:+.1f}{' pts' if in_points else '%'})"
    return text


def to_markdown(runs: list[Run]) -> str:
    """One table per task, detector, backbone and device; rows Eval, Tune, then Train, Frozen, Deploy as run."""
    table = summarize(runs)
    parts = []
    for section in sorted(table):
        task, detector, backbone, device = section
        modes = sorted(table[section], key=lambda mode: order(mode, MODE_ORDER))
        base = table[section].get("eval", {})
        parts += [f"## detection · {task} · {detector} · {backbone} · {device}", "",
                  "| BN mode | seeds | " + " | ".join(COLUMNS[name][0] for name in COLUMNS) + " |",
                  "|" + "---|" * (len(COLUMNS) + 2)]
        for mode in modes:
            stats = table[section][mode]
            cells = [_cell(name, stats[name], base.get(name)) for name in COLUMNS]
            parts.append(f"| {mode} | {int(stats['seeds'].mean)} | " + " | ".join(cells) + " |")
        parts.append("")
    if parts:
        parts += ["In parentheses: the change versus Eval of the same detector (mAP in points, i.e. x100; the rest in "
                  "percent). mAP: the best over the epochs on the test split (torchmetrics' MeanAveragePrecision, "
                  "pycocotools). Kept for backward and step peak: the first training step (the probe step); s/iter: "
                  "median over logging windows after the first, each run a process of its own, so load on the "
                  "machine shifts it.", ""]
    return "\n".join(parts)


def plot(runs: list[Run], out: Path) -> list[Path]:
    """Per task and device, one bar chart per figure: a cluster per detector and backbone, a bar per BN mode."""
    table = summarize(runs)
    paths = []
    for task, device in sorted({(section[0], section[3]) for section in table}):
        sections = [section for section in sorted(table) if (section[0], section[3]) == (task, device)]
        modes = sorted({mode for section in sections for mode in table[section]},
                       key=lambda mode: order(mode, MODE_ORDER))
        for name, (header, fmt, _, axis) in COLUMNS.items():
            fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(sections)), 4))
            width = 0.8 / len(modes)
            for i, mode in enumerate(modes):
                stats = [table[section].get(mode, {}).get(name) for section in sections]
                bars = ax.bar([x + i * width for x in range(len(sections))],
                              [s.mean if s else float("nan") for s in stats], width, label=mode,
                              yerr=[s.std if s else 0 for s in stats], color=f"C{order(mode, MODE_ORDER)[0]}")
                ax.bar_label(bars, labels=[fmt.format(s.mean) if s else "" for s in stats], fontsize=7)
            ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(sections))])
            ax.set_xticklabels([f"{section[1]} {section[2]}" for section in sections], fontsize=8)
            ax.set_ylabel(axis)
            ax.set_title(f"detection, {task}, {device}: {header}", fontsize=9)
            ax.legend(title="BN mode", fontsize=8)
            fig.tight_layout()
            paths.append(out / f"{file_name('detection', task, device, name)}.png")
            _save_figure(fig, paths[-1])
    return paths
