"""Summarise a sweep's TensorBoard logs into a paper-style Markdown table and PNG plots.

Usage: python -m experiments.report LOGDIR [--out DIR]

Every directory under LOGDIR holding event files is one run; its `config` text tag (JSON) says which
dataset/task/arch/method/bn_mode/seed it is. Runs differing only in seed are averaged (mean ± std).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.util.tensor_util import make_ndarray  # noqa: E402

GROUP_FIELDS = ("dataset", "task", "arch", "method")
MODE_ORDER = ("train", "eval", "tune", "deploy")
CONFIG_TAGS = ("config", "config/text_summary")  # the second is what torch's SummaryWriter.add_text writes
ACC_TAG, CURVE_TAG = "eval/best_target_acc", "eval/target_acc"
PEAK_TAG, KEPT_TAG, TIME_TAG = "memory/peak_mib", "memory/kept_for_backward_mib", "time/iter_s"
EXPECTED_SCALARS = (ACC_TAG, CURVE_TAG, PEAK_TAG, KEPT_TAG, TIME_TAG)
# metric name -> (column header, format of the value, whether its change is in points rather than percent)
METRICS = {
    "accuracy": ("accuracy %", "{:.2f}", True),
    "peak_mib": ("peak MiB", "{:.1f}", False),
    "kept_mib": ("kept-for-backward MiB", "{:.1f}", False),
    "iter_s": ("s/iter", "{:.4f}", False),
}


@dataclass
class Run:
    """One run directory: its config and every scalar series as (step, value) pairs sorted by step."""

    name: str
    config: dict
    scalars: dict[str, list[tuple[int, float]]]

    def setting(self, key: str) -> str:
        """A config value as text; '-' when the run did not log it."""
        return str(self.config.get(key, "-"))

    @property
    def group(self) -> tuple[str, ...]:
        """The table section this run belongs to (everything but mode and seed)."""
        return tuple(self.setting(key) for key in GROUP_FIELDS)

    @property
    def mode(self) -> str:
        """The BN mode the run trained with (train, eval, tune, deploy)."""
        return self.setting("bn_mode")


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one metric over the seeds that logged it."""

    mean: float
    std: float
    n: int


@dataclass
class Row:
    """One table row: a group and BN mode, its metrics, and their changes relative to Train and to Eval."""

    group: tuple[str, ...]
    mode: str
    runs: int
    metrics: dict[str, Stat | None]
    vs_train: dict[str, float | None]
    vs_eval: dict[str, float | None]


def _read_config(acc: EventAccumulator) -> dict:
    """Decode the JSON of the run's `config` text tag (the last one written), or {} if absent."""
    for tag in CONFIG_TAGS:
        if tag in acc.Tags()["tensors"]:
            text = make_ndarray(acc.Tensors(tag)[-1].tensor_proto).flat[0]
            return json.loads(text.decode() if isinstance(text, bytes) else text)
    return {}


def load_runs(logdir: str | Path) -> list[Run]:
    """Read every run under `logdir`; warn about runs lacking expected tags, raise if there are no runs."""
    root = Path(logdir)
    if not root.is_dir():
        raise FileNotFoundError(f"log directory {root} does not exist")
    run_dirs = sorted({path.parent for path in root.rglob("events.out.tfevents.*")})
    if not run_dirs:
        raise FileNotFoundError(f"no TensorBoard event files under {root}")
    runs = []
    for run_dir in run_dirs:
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        scalars = {
            tag: sorted((event.step, event.value) for event in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]
        }
        run = Run(str(run_dir.relative_to(root)) or ".", _read_config(acc), scalars)
        missing = [tag for tag in EXPECTED_SCALARS if tag not in scalars] + ([] if run.config else ["config"])
        if missing:
            warnings.warn(f"run {run.name}: missing tags {', '.join(missing)} (shown as '-')", stacklevel=2)
        runs.append(run)
    return runs


def run_metrics(run: Run) -> dict[str, float | None]:
    """Per-run figures: best target accuracy, peak memory over all windows, the kept-for-backward probe,
    and the median time/iteration over the logging windows after the first (warm-up) one."""
    series = run.scalars
    times = [value for _, value in series.get(TIME_TAG, [])]
    times = times[1:] if len(times) > 1 else times
    return {
        "accuracy": series[ACC_TAG][-1][1] if ACC_TAG in series else None,
        "peak_mib": max(value for _, value in series[PEAK_TAG]) if PEAK_TAG in series else None,
        "kept_mib": series[KEPT_TAG][0][1] if KEPT_TAG in series else None,
        "iter_s": statistics.median(times) if times else None,
    }


def _stat(values: list[float]) -> Stat | None:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stat(statistics.fmean(values), std, len(values))


def _change(metrics: dict[str, Stat | None], base: dict[str, Stat | None] | None) -> dict[str, float | None]:
    """Change of each metric versus `base`: points for accuracy, percent otherwise; None if incomparable."""
    changes: dict[str, float | None] = {}
    for name, (_, _, in_points) in METRICS.items():
        value, ref = metrics[name], base[name] if base else None
        if value is None or ref is None or (not in_points and ref.mean == 0):
            changes[name] = None
        else:
            changes[name] = value.mean - ref.mean if in_points else 100 * (value.mean / ref.mean - 1)
    return changes


def _mode_key(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def summarize(runs: list[Run]) -> list[Row]:
    """Aggregate runs over seeds into one row per (group, mode), ordered train, eval, tune, deploy, others."""
    by_key: dict[tuple[tuple[str, ...], str], list[dict[str, float | None]]] = defaultdict(list)
    for run in runs:
        by_key[run.group, run.mode].append(run_metrics(run))
    stats = {
        key: {name: _stat([m[name] for m in per_run if m[name] is not None]) for name in METRICS}
        for key, per_run in by_key.items()
    }
    return [
        Row(
            group,
            mode,
            len(by_key[group, mode]),
            stats[group, mode],
            _change(stats[group, mode], stats.get((group, "train"))),
            _change(stats[group, mode], stats.get((group, "eval"))),
        )
        for group, mode in sorted(stats, key=lambda key: (key[0], _mode_key(key[1])))
    ]


def _cell(row: Row, name: str) -> str:
    """'value ± std (Δ vs Train / Δ vs Eval)', with '-' for anything not logged."""
    _, fmt, in_points = METRICS[name]
    stat = row.metrics[name]
    if stat is None:
        return "-"
    text = fmt.format(stat.mean) + (f" ± {fmt.format(stat.std)}" if stat.n > 1 else "")
    unit = " pp" if in_points else "%"
    changes = [row.vs_train[name], row.vs_eval[name]]
    if any(change is not None for change in changes):
        text += " (" + " / ".join("-" if c is None else f"{c:+.1f}{unit}" for c in changes) + ")"
    return text


def to_markdown(rows: list[Row]) -> str:
    """The report table; each metric cell carries its change versus Train and versus Eval in parentheses."""
    header = [*GROUP_FIELDS, "bn mode", "runs", *(METRICS[name][0] for name in METRICS)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *(
            "| " + " | ".join([*row.group, row.mode, str(row.runs), *(_cell(row, n) for n in METRICS)]) + " |"
            for row in rows
        ),
    ]
    legend = (
        "Values are mean ± std over seeds; in parentheses the change versus Train / versus Eval of the same "
        "group (accuracy in percentage points, the rest in percent). Time is the median over logging "
        "windows after the first."
    )
    return "\n".join(lines) + "\n\n" + legend + "\n"


def _plot_bars(rows: list[Row], path: Path) -> None:
    """Grouped bars: for each metric panel, one cluster per group with a bar per BN mode."""
    groups = sorted({row.group for row in rows})
    modes = sorted({row.mode for row in rows}, key=_mode_key)
    width = 0.8 / len(modes)
    names = ("peak_mib", "kept_mib", "iter_s")
    metrics = {(row.group, row.mode): row.metrics for row in rows}
    fig, axes = plt.subplots(len(names), 1, figsize=(max(6, 1.5 * len(groups) * len(modes) ** 0.5), 10))
    for ax, name in zip(axes, names, strict=True):
        for i, mode in enumerate(modes):
            stats = [metrics.get((group, mode), {}).get(name) for group in groups]
            ax.bar(
                [x + i * width for x in range(len(groups))],
                [s.mean if s else float("nan") for s in stats],  # NaN: no bar where nothing was logged
                width,
                yerr=[s.std if s else 0 for s in stats],
                label=mode,
            )
        ax.set_ylabel(METRICS[name][0])
        ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(groups))])
        ax.set_xticklabels(["/".join(g) for g in groups], rotation=20, ha="right", fontsize=8)
    axes[0].legend(title="bn mode")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_curves(runs: list[Run], path: Path) -> None:
    """Target accuracy per epoch, one panel per group, one line per run coloured by BN mode."""
    groups = sorted({run.group for run in runs if CURVE_TAG in run.scalars})
    modes = sorted({run.mode for run in runs}, key=_mode_key)
    colours = {mode: f"C{i}" for i, mode in enumerate(modes)}
    cols = min(3, max(1, len(groups)))
    rows_n = max(1, -(-len(groups) // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.5 * rows_n), squeeze=False)
    for ax, group in zip(axes.flat, groups, strict=False):
        labelled = set()
        curves = [run for run in runs if run.group == group and CURVE_TAG in run.scalars]
        for run in sorted(curves, key=lambda run: _mode_key(run.mode)):
            steps, values = zip(*run.scalars[CURVE_TAG], strict=True)
            label = None if run.mode in labelled else run.mode
            labelled.add(run.mode)
            ax.plot(steps, values, color=colours[run.mode], label=label, alpha=0.8)
        ax.set_title("/".join(group), fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("target accuracy %")
        ax.legend(fontsize=8)
    for ax in axes.flat[len(groups) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot(runs: list[Run], rows: list[Row], out_dir: str | Path) -> list[Path]:
    """Write the memory/time bars and the accuracy-per-epoch curves into `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bars, curves = out / "memory_time.png", out / "accuracy_curves.png"
    _plot_bars(rows, bars)
    _plot_curves(runs, curves)
    return [bars, curves]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: write report.md and the plots, print the table and the paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", type=Path, help="sweep directory holding one sub-directory per run")
    parser.add_argument("--out", type=Path, help="where to write report.md and plots (default: LOGDIR)")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.logdir)
    except FileNotFoundError as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    rows = summarize(runs)
    out = args.out or args.logdir
    table = to_markdown(rows)
    images = plot(runs, rows, out)
    report = out / "report.md"
    images_md = "".join(f"![{path.stem}]({path.name})\n" for path in images)
    report.write_text(f"# Sweep report: {args.logdir}\n\n{table}\n{images_md}")
    print(table)
    for path in (report, *images):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
