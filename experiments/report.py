"""Summarise a sweep's run directories into tables like the paper's TLlib table, and one-panel PNG figures.

Usage: python -m experiments.report LOGDIR [--out DIR] [--benchmark JSON]

A run directory holds config.json (what ran: method, dataset, task, arch, bn_mode, seed, device, ...), the
TensorBoard events it logged and, once it finished, results.json. Per dataset, backbone and device there is one
table: per task and method, rows Train -> Eval -> Tune (-> Deploy) with target accuracy, memory and time, each with
its change versus Train and versus Eval. Finished runs that differ only in seed are averaged (mean ± std); runs
without results.json are in progress: listed under their table, never averaged. A run whose config.json is not
JSON is skipped with a warning; one without config.json falls back to the `config` text tag that earlier versions
of the engine logged, and is skipped when that is absent too. When LOGDIR holds benchmark.json (written by
`python -m benchmarks ... --json LOGDIR/benchmark.json`), its interleaved ms/step is quoted beside the runs' s/iter.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.util.tensor_util import make_ndarray  # noqa: E402

CONFIG, RESULTS, BENCHMARK = "config.json", "results.json", "benchmark.json"
LEGACY_CONFIG_TAGS = ("config", "config/text_summary")  # what SummaryWriter.add_text("config", ...) writes
GROUP_FIELDS = ("task", "method")  # one block of rows per task and method, within a section
SECTION_FIELDS = ("dataset", "arch")  # one table per dataset, backbone and device kind
MODE_ORDER = ("train", "eval", "tune", "deploy")
METHOD_ORDER = ("finetune", "dann", "cdan")
ACC_TAG, CURVE_TAG = "eval/best_target_acc", "eval/target_acc"
KEPT_TAG, STEP_PEAK_TAG, PEAK_TAG, TIME_TAG = (
    "memory/kept_for_backward_mib", "memory/step_peak_mib", "memory/peak_mib", "time/iter_s",
)
EXPECTED_SCALARS = (ACC_TAG, CURVE_TAG, KEPT_TAG, STEP_PEAK_TAG, PEAK_TAG, TIME_TAG)


@dataclass(frozen=True)
class Metric:
    """A table column: its header (per device kind where the source differs), format, unit and plot label."""

    headers: dict[str, str]  # device kind ("cpu", "cuda") -> header; "" is the default
    fmt: str
    in_points: bool  # its change is a difference in points (accuracy), not a percentage
    axis: str = ""  # y-axis label of its bar chart; no chart when empty
    figure: str = ""  # the chart's file name starts with this

    def header(self, device: str) -> str:
        return self.headers.get(device, self.headers[""])


METRICS = {
    "accuracy": Metric({"": "target acc %"}, "{:.2f}", True),
    "kept_mib": Metric({"": "kept for backward MiB"}, "{:.2f}", False, "kept for backward in one step (MiB)",
                       "kept_for_backward"),
    "step_peak_mib": Metric(
        {"": "step peak MiB (probe step, profiler)", "cuda": "step peak MiB (probe step, CUDA max allocated)"},
        "{:.2f}", False, "step peak of the probe step (MiB)", "step_peak",
    ),
    "peak_mib": Metric({"": "peak RSS MiB", "cuda": "peak MiB (CUDA max allocated)"}, "{:.0f}", False,
                       "peak memory of the run (MiB)", "peak_memory"),
    "iter_s": Metric({"": "s/iter (separate runs)"}, "{:.4f}", False, "time per iteration (s), separate runs",
                     "time_per_iter"),
    "bench_ms": Metric({"": "ms/step (interleaved benchmark)"}, "{:.1f}", False),
}
RUN_METRICS = ("accuracy", "kept_mib", "step_peak_mib", "peak_mib", "iter_s")


@dataclass
class Run:
    """One run directory: its config, every scalar series as (step, value) pairs sorted by step, and whether
    it finished (results.json exists)."""

    name: str
    config: dict
    scalars: dict[str, list[tuple[int, float]]]
    finished: bool

    def setting(self, key: str) -> str:
        """A config value as text; '-' when the run's config lacks it."""
        return str(self.config.get(key, "-"))

    @property
    def device(self) -> str:
        """The device kind the run trained on: 'cuda', 'cpu', ... ('cpu' when unknown)."""
        return self.setting("device").split(":")[0] if "device" in self.config else "cpu"

    @property
    def section(self) -> tuple[str, ...]:
        """The table this run belongs to: dataset, backbone and device kind."""
        return (*(self.setting(key) for key in SECTION_FIELDS), self.device)

    @property
    def group(self) -> tuple[str, ...]:
        """The block of rows within the table: task and method."""
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
    """One table row: section, group and BN mode, the finished seeds' metrics, and their changes relative to
    Train and to Eval of the same group."""

    section: tuple[str, ...]
    group: tuple[str, ...]
    mode: str
    runs: int
    metrics: dict[str, Stat | None]
    vs_train: dict[str, float | None] = field(default_factory=dict)
    vs_eval: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Benchmark:
    """The interleaved step-time benchmark of one backbone: its settings and, per BN mode, its figures."""

    path: Path
    model: str
    device: str  # device kind
    settings: str  # "batch 32, 28 px, float32, cpu (1 threads), 30 reps"
    command: str
    results: dict[str, dict]  # mode -> record with time_ms, time_ms_q1, time_ms_q3, kept_mib, step_peak_mib

    def ms(self, mode: str) -> float | None:
        record = self.results.get(mode, {})
        return record.get("time_ms") if record.get("status") == "ok" else None


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _legacy_config(events: EventAccumulator) -> str | None:
    """The text of the `config` tag that earlier engine versions logged, or None."""
    for tag in LEGACY_CONFIG_TAGS:
        if tag in events.Tags()["tensors"]:
            text = make_ndarray(events.Tensors(tag)[-1].tensor_proto).flat[0]
            return text.decode() if isinstance(text, bytes) else str(text)
    return None


def read_config(run_dir: Path, name: str, events: EventAccumulator) -> dict | None:
    """The run's configuration from config.json (else the legacy text tag); None, with a warning, if unusable."""
    path = run_dir / CONFIG
    try:
        text = path.read_text() if path.is_file() else _legacy_config(events)
    except (OSError, UnicodeDecodeError) as error:
        _warn(f"run {name}: cannot read {path} ({error}): skipped")
        return None
    if text is None:
        _warn(f"run {name}: no {CONFIG}: skipped")
        return None
    source = path if path.is_file() else "its config tag"
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        _warn(f"run {name}: {source} is not JSON ({error}): skipped")
        return None
    if not isinstance(config, dict):
        _warn(f"run {name}: {source} is not a JSON object: skipped")
        return None
    return config


def run_directories(root: Path) -> list[Path]:
    """Every directory under `root` (itself included) that holds a config.json or TensorBoard event files."""
    marked = [*root.rglob(CONFIG), *root.rglob("events.out.tfevents.*")]
    return sorted({path.parent for path in marked})


def load_runs(logdir: str | Path) -> list[Run]:
    """Read every run under `logdir`; warn about unusable runs and missing tags; raise if there are no runs."""
    root = Path(logdir)
    if not root.is_dir():
        raise FileNotFoundError(f"log directory {root} does not exist")
    directories = run_directories(root)
    if not directories:
        raise FileNotFoundError(f"no run directories ({CONFIG} or TensorBoard event files) under {root}")
    runs, lacking = [], defaultdict(list)
    for run_dir in directories:
        name = str(run_dir.relative_to(root)) or "."
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        config = read_config(run_dir, name, events)
        if config is None:
            continue
        scalars = {
            tag: sorted((event.step, event.value) for event in events.Scalars(tag)) for tag in events.Tags()["scalars"]
        }
        run = Run(name, config, scalars, (run_dir / RESULTS).is_file())
        missing = tuple(tag for tag in EXPECTED_SCALARS if tag not in scalars and (run.finished or tag != ACC_TAG))
        if missing:
            lacking[missing].append(name)
        runs.append(run)
    for missing, names in lacking.items():
        _warn(f"{len(names)} run(s) lack {', '.join(missing)} (shown as '-'): {', '.join(names)}")
    return runs


def run_metrics(run: Run) -> dict[str, float | None]:
    """Per-run figures: best target accuracy, the probe step's kept-for-backward and step peak, the peak over
    all logging windows, and the median time/iteration over the windows after the first (warm-up) one."""
    series = run.scalars
    times = [value for _, value in series.get(TIME_TAG, [])]
    times = times[1:] if len(times) > 1 else times
    return {
        "accuracy": series[ACC_TAG][-1][1] if ACC_TAG in series else None,
        "kept_mib": series[KEPT_TAG][0][1] if KEPT_TAG in series else None,
        "step_peak_mib": series[STEP_PEAK_TAG][0][1] if STEP_PEAK_TAG in series else None,
        "peak_mib": max(value for _, value in series[PEAK_TAG]) if PEAK_TAG in series else None,
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
    for name, metric in METRICS.items():
        value, ref = metrics.get(name), base.get(name) if base else None
        if value is None or ref is None or (not metric.in_points and ref.mean == 0):
            changes[name] = None
        else:
            changes[name] = value.mean - ref.mean if metric.in_points else 100 * (value.mean / ref.mean - 1)
    return changes


def _order(value: str, known: tuple[str, ...]) -> tuple[int, str]:
    return (known.index(value) if value in known else len(known), value)


def _row_key(row: Row | Run) -> tuple:
    """Tables list sections, then tasks, then methods in TLlib's order, then Train, Eval, Tune, Deploy."""
    task, method = row.group
    return row.section, task, _order(method, METHOD_ORDER), _order(row.mode, MODE_ORDER)


def summarize(runs: list[Run], benchmarks: list[Benchmark] = ()) -> list[Row]:
    """One row per (section, group, mode) with finished runs, averaged over seeds and ordered Train, Eval, Tune,
    Deploy; the benchmark's ms/step of the same backbone, device kind and mode fills the `bench_ms` column."""
    by_key: dict[tuple, list[dict[str, float | None]]] = defaultdict(list)
    for run in runs:
        if run.finished:
            by_key[run.section, run.group, run.mode].append(run_metrics(run))
    rows = []
    for (section, group, mode), per_run in by_key.items():
        metrics = {name: _stat([m[name] for m in per_run if m[name] is not None]) for name in RUN_METRICS}
        bench = next((b for b in benchmarks if (b.model, b.device) == (section[1], section[2])), None)
        ms = bench.ms(mode) if bench else None
        metrics["bench_ms"] = Stat(ms, 0.0, 1) if ms is not None else None
        rows.append(Row(section, group, mode, len(per_run), metrics))
    stats = {(row.section, row.group, row.mode): row.metrics for row in rows}
    for row in rows:
        row.vs_train = _change(row.metrics, stats.get((row.section, row.group, "train")))
        row.vs_eval = _change(row.metrics, stats.get((row.section, row.group, "eval")))
    return sorted(rows, key=_row_key)


def _cell(row: Row, name: str) -> str:
    """'value ± std (Δ vs Train / Δ vs Eval)', with '-' for anything not logged."""
    metric, stat = METRICS[name], row.metrics.get(name)
    if stat is None:
        return "-"
    text = metric.fmt.format(stat.mean) + (f" ± {metric.fmt.format(stat.std)}" if stat.n > 1 else "")
    unit = " pp" if metric.in_points else "%"
    changes = [row.vs_train.get(name), row.vs_eval.get(name)]
    if any(change is not None for change in changes):
        text += " (" + " / ".join("-" if c is None else f"{c:+.1f}{unit}" for c in changes) + ")"
    return text


def _table(rows: list[Row], device: str) -> list[str]:
    header = ["task", "method", "BN mode", "seeds", *(METRICS[name].header(device) for name in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [*row.group, row.mode, str(row.runs), *(_cell(row, name) for name in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _in_progress(runs: list[Run]) -> list[str]:
    lines = []
    for run in sorted(runs, key=lambda run: run.name):
        last = max((series[-1][0] for series in run.scalars.values() if series), default=None)
        where = f", last logged at iteration {last}" if last is not None else ", nothing logged yet"
        lines.append(f"- `{run.name}`: {' '.join(run.group)} {run.mode} seed {run.setting('seed')}{where}")
    return lines


LEGEND = (
    "Mean ± std over finished seeds; in parentheses the change versus Train / versus Eval of the same task and "
    "method (accuracy in percentage points, the rest in percent). Target acc: the best top-1 accuracy on the "
    "target's test data over the epochs. Kept for backward: what autograd keeps for backward in the first training "
    "step (the probe step); step peak: the peak tensor memory of that step ({step_source}); {peak}. s/iter: median "
    "over logging windows after the first, measured inside each run, a process of its own that ran at another time "
    "than the other modes' (one after another, or a few at a time), so load on the machine shifts it; ms/step "
    "(interleaved benchmark): the backbone's training step timed in every mode in turn, in one process on one "
    "batch, the figure to compare modes' speed by."
)
PEAK_NOTE = {
    "cpu": "peak RSS (CPU): the process's resident memory, mostly libraries and data, so nearly equal across modes",
    "cuda": "peak MiB (GPU): CUDA max allocated over the run",
}
STEP_SOURCE = {"cpu": "torch.profiler memory events", "cuda": "CUDA max allocated"}


def _benchmark_table(bench: Benchmark) -> list[str]:
    """The benchmark's own figures for every mode it ran, with ratios to Eval and Train."""
    lines = [
        f"### Interleaved benchmark: {bench.model}, {bench.settings}",
        "",
        f"`{bench.command}` ({bench.path.name})",
        "",
        "| BN mode | ms/step [IQR] | vs Train | vs Eval | kept for backward MiB | step peak MiB | "
        "gradient error vs Eval in float64 (parameters / input) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, record in sorted(bench.results.items(), key=lambda item: _order(item[0], MODE_ORDER)):
        if record.get("status") != "ok":
            lines.append(f"| {mode} | {record.get('status', '-')} | | | | | |")
            continue
        ms = record.get("time_ms")
        changes = [f"{100 * (ms / bench.ms(base) - 1):+.1f}%" if ms and bench.ms(base) else "-"
                   for base in ("train", "eval")]
        spread = f" [{record['time_ms_q1']:.1f}-{record['time_ms_q3']:.1f}]" if "time_ms_q1" in record else ""
        figures = [_number(record.get(key), "{:.2f}") for key in ("kept_mib", "step_peak_mib")]
        errors = [record.get(f"f64_{part}_grad_rel_err") for part in ("param", "input")]
        exact = "-" if None in errors else " / ".join(f"{error:.1e}" for error in errors)
        lines.append(f"| {mode} | {_number(ms, '{:.1f}')}{spread} | {' | '.join(changes)} | {' | '.join(figures)} | "
                     f"{exact} |")
    return lines


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def agreement_with_eval(runs: list[Run]) -> list[str]:
    """For each finished Tune (and Deploy) run with a finished Eval run of the same section, group and seed: at how
    many evaluations their target accuracies are identical, and the largest difference. Tune computes Eval's
    function, so the two curves coincide until float32 rounding, which differs between the two, has drifted
    their weights apart (as it does for Eval against itself on another thread count)."""
    finished = [run for run in runs if run.finished and run.scalars.get(CURVE_TAG)]
    evals = {(run.section, run.group, run.setting("seed")): run for run in finished if run.mode == "eval"}
    lines = []
    for run in sorted(finished, key=lambda run: (*_row_key(run), run.name)):
        reference = evals.get((run.section, run.group, run.setting("seed")))
        if run.mode not in ("tune", "deploy") or reference is None:
            continue
        ours, theirs = dict(run.scalars[CURVE_TAG]), dict(reference.scalars[CURVE_TAG])
        gaps = [abs(ours[step] - theirs[step]) for step in sorted(ours.keys() & theirs.keys())]
        if gaps:
            same = sum(gap == 0 for gap in gaps)
            lines.append(f"- {' '.join(run.group)} seed {run.setting('seed')}, {run.mode}: identical at {same} of "
                         f"{len(gaps)} evaluations, largest difference {max(gaps):.2f} pp")
    return lines


def to_markdown(runs: list[Run], rows: list[Row], benchmarks: list[Benchmark] = ()) -> str:
    """Per section, the table, the runs still in progress and the legend; then each benchmark's own table."""
    sections = sorted({row.section for row in rows} | {run.section for run in runs if not run.finished})
    parts = []
    for section in sections:
        dataset, arch, device = section
        finished = sum(run.finished and run.section == section for run in runs)
        parts += [f"## {dataset} · {arch} · {device} ({finished} finished runs)", ""]
        parts += _table([row for row in rows if row.section == section], device)
        agreement = agreement_with_eval([run for run in runs if run.section == section])
        if agreement:
            parts += ["", "Target accuracy against Eval's, same seed, after every epoch (float32 rounding, which "
                          "differs between modes, slowly drifts runs apart; in float64 they agree):", *agreement]
        pending = [run for run in runs if run.section == section and not run.finished]
        if pending:
            parts += ["", "In progress (no results.json yet; not in the averages):", *_in_progress(pending)]
        parts.append("")
    devices = sorted({section[2] for section in sections}, key=lambda device: device != "cpu")
    step_source = "; ".join(f"{device}: {STEP_SOURCE.get(device, STEP_SOURCE['cpu'])}" for device in devices)
    peak = "; ".join(PEAK_NOTE.get(device, PEAK_NOTE["cpu"]) for device in devices)
    parts += [LEGEND.format(step_source=step_source, peak=peak), ""]
    for bench in benchmarks:
        parts += [*_benchmark_table(bench), ""]
    return "\n".join(parts)


def load_benchmark(path: Path) -> Benchmark | None:
    """The JSON `python -m benchmarks --json` writes; None, with a warning, when it cannot be used."""
    try:
        document = json.loads(path.read_text())
        args, results = document["meta"]["args"], document["results"]
        device = str(args["device"]).split(":")[0]
        settings = (f"batch {args['batch_size']}, {args['resolution']} px, {args['dtype']}, {device} "
                    f"({document['meta'].get('threads', '?')} threads), {args['reps']} reps per mode")
        return Benchmark(path, str(args["model"]), device, settings, document["meta"].get("command", ""),
                         {mode: dict(record) for mode, record in results.items()})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        _warn(f"benchmark {path}: not a benchmark JSON ({type(error).__name__}: {error}): not quoted")
        return None


def _file_name(*parts: str) -> str:
    """A file name from free text: 'M->U' becomes 'M2U', anything else odd becomes '-'."""
    text = "_".join(part.replace("->", "2") for part in parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def _save_figure(fig: plt.Figure, path: Path) -> None:
    _write_atomically(path, lambda temporary: fig.savefig(temporary, format="png", dpi=110))
    plt.close(fig)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write with `write` to a unique temporary file beside `path`, then rename it into place."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# Eval is drawn wide and pale under the others, so that a Tune curve equal to it stays visibly on top of it.
CURVE_STYLE = {"train": {"marker": "."}, "eval": {"linewidth": 6, "alpha": 0.35}, "tune": {"marker": "."},
               "deploy": {"marker": "x", "linestyle": ":"}}


def _plot_curve(runs: list[Run], path: Path) -> None:
    """Target accuracy over training of one task and method: a line per run, coloured by BN mode."""
    fig, ax = plt.subplots(figsize=(6, 4))
    labelled = set()
    for run in sorted(runs, key=lambda run: (_order(run.mode, MODE_ORDER), run.name)):
        per_epoch = int(run.config.get("iters_per_epoch", 0) or 0)
        steps, values = zip(*run.scalars[CURVE_TAG], strict=True)
        x = [(step + 1) * per_epoch for step in steps] if per_epoch else list(steps)
        label = run.mode + ("" if run.finished else " (in progress)")
        style = {**CURVE_STYLE.get(run.mode, {}), **({} if run.finished else {"linestyle": "--"})}
        ax.plot(x, values, color=f"C{_order(run.mode, MODE_ORDER)[0]}", label=None if label in labelled else label,
                **style)
        labelled.add(label)
    first = runs[0]
    ax.set_xlabel("training iteration" if first.config.get("iters_per_epoch") else "epoch")
    ax.set_ylabel("target accuracy (%)")
    ax.set_title(f"{first.setting('dataset')} {first.setting('task')}, {first.setting('method')}, "
                 f"{first.setting('arch')}: target accuracy during training", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(title="BN mode", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)


def _plot_bars(rows: list[Row], name: str, path: Path) -> None:
    """One metric of one section: a cluster per task and method, a bar per BN mode (error bar: std over seeds)."""
    groups = sorted({row.group for row in rows}, key=lambda g: (g[0], _order(g[1], METHOD_ORDER)))
    modes = sorted({row.mode for row in rows}, key=lambda mode: _order(mode, MODE_ORDER))
    width = 0.8 / len(modes)
    metrics = {(row.group, row.mode): row.metrics.get(name) for row in rows}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * len(modes) ** 0.5), 4))
    for i, mode in enumerate(modes):
        stats = [metrics.get((group, mode)) for group in groups]
        bars = ax.bar([x + i * width for x in range(len(groups))],
                      [s.mean if s else float("nan") for s in stats],  # NaN: no bar where nothing was logged
                      width, yerr=[s.std if s else 0 for s in stats], label=mode,
                      color=f"C{_order(mode, MODE_ORDER)[0]}")
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
                   key=lambda mode: _order(mode, MODE_ORDER))
    records = [bench.results[mode] for mode in modes]
    medians = [record["time_ms"] for record in records]
    spread = [[m - record.get("time_ms_q1", m) for m, record in zip(medians, records, strict=True)],
              [record.get("time_ms_q3", m) - m for m, record in zip(medians, records, strict=True)]]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(modes, medians, yerr=spread, color=[f"C{_order(mode, MODE_ORDER)[0]}" for mode in modes])
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
        paths.append(out / f"{_file_name('accuracy', *section[:2], *group)}.png")
        _plot_curve(members, paths[-1])
    for section in sorted({row.section for row in rows}):
        members = [row for row in rows if row.section == section]
        for name, metric in METRICS.items():
            if metric.figure and any(row.metrics.get(name) for row in members):
                paths.append(out / f"{_file_name(metric.figure, *section)}.png")
                _plot_bars(members, name, paths[-1])
    for bench in benchmarks:
        if any(bench.ms(mode) is not None for mode in bench.results):
            paths.append(out / f"{_file_name('benchmark_time', bench.model, bench.device)}.png")
            _plot_benchmark(bench, paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: write report.md and the figures, print the tables and the paths; warnings and errors go to
    stderr as one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", type=Path, help="sweep directory holding one sub-directory per run")
    parser.add_argument("--out", type=Path, help="where to write report.md and the figures (default: LOGDIR)")
    parser.add_argument("--benchmark", type=Path, action="append",
                        help=f"a `python -m benchmarks --json` file to quote (default: LOGDIR/{BENCHMARK} if present)")
    args = parser.parse_args(argv)
    absent = [path for path in args.benchmark or [] if not path.is_file()]
    if absent:
        print(f"error: --benchmark {absent[0]} does not exist; write it with python -m benchmarks ... --json "
              f"{absent[0]}, or leave the option out", file=sys.stderr)
        return 2
    default = args.logdir / BENCHMARK
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runs = load_runs(args.logdir)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        paths = args.benchmark or ([default] if default.is_file() else [])
        benchmarks = [bench for bench in map(load_benchmark, paths) if bench is not None]
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if not runs:
        print(f"error: no usable runs under {args.logdir} (see the warnings above)", file=sys.stderr)
        return 2
    rows = summarize(runs, benchmarks)
    out = args.out or args.logdir
    out.mkdir(parents=True, exist_ok=True)
    text = to_markdown(runs, rows, benchmarks)
    images = plot(runs, rows, out, benchmarks)
    report = out / "report.md"
    images_md = "".join(f"![{path.stem}]({path.name})\n" for path in images)
    _write_atomically(report, lambda temporary: temporary.write_text(f"# Sweep report: {args.logdir}\n\n{text}\n"
                                                                     f"{images_md}"))
    print(text)
    for path in (report, *images):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
