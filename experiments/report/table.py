"""The tables: per-run figures, their averages over seeds with changes versus Train and Eval, Tune's agreement with
Eval, and the Markdown that lays them out like the paper's TLlib table."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from experiments.report.sweep import (
    ACC_TAG,
    CURVE_TAG,
    KEPT_TAG,
    MODE_ORDER,
    PEAK_TAG,
    STEP_PEAK_TAG,
    TIME_TAG,
    Benchmark,
    Run,
    order,
    run_key,
)


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
    return sorted(rows, key=run_key)


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
    for mode, record in sorted(bench.results.items(), key=lambda item: order(item[0], MODE_ORDER)):
        if record.get("status") != "ok":
            lines.append(f"| {mode} | {record.get('status', '-')} | | | | | |")
            continue
        ms = record.get("time_ms")
        ratios = [record.get(f"vs_{base}", {}).get("time_ms") for base in ("train", "eval")]
        changes = ["-" if ratio is None else f"{100 * (ratio - 1):+.1f}%" for ratio in ratios]
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
    for run in sorted(finished, key=lambda run: (*run_key(run), run.name)):
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
