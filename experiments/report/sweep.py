"""Reading a sweep: each run directory's configuration, scalars and state, and the benchmark JSON beside them.

A run directory holds config.json (what ran), the TensorBoard events it logged and, once it finished, results.json.
A run whose config.json is missing or not a JSON object is skipped with a warning.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.layout import (
    BEST_TARGET_ACC,
    CONFIG,
    EVENT_FILES,
    ITER_TIME,
    KEPT_FOR_BACKWARD,
    PEAK,
    RESULTS,
    STEP_PEAK,
    TARGET_ACC,
)

BENCHMARK = "benchmark.json"
GROUP_FIELDS = ("task", "method")  # one block of rows per task and method, within a section
SECTION_FIELDS = ("dataset", "arch")  # one table per dataset, backbone and device kind
MODE_ORDER = ("train", "eval", "tune", "deploy")
METHOD_ORDER = ("finetune", "dann", "cdan")
ACC_TAG, CURVE_TAG = BEST_TARGET_ACC, TARGET_ACC
KEPT_TAG, STEP_PEAK_TAG, PEAK_TAG, TIME_TAG = KEPT_FOR_BACKWARD, STEP_PEAK, PEAK, ITER_TIME
EXPECTED_SCALARS = (ACC_TAG, CURVE_TAG, KEPT_TAG, STEP_PEAK_TAG, PEAK_TAG, TIME_TAG)
# Detection runs (experiments.detection) are scored by mAP instead of accuracy.
DETECTION_SCALARS = ("eval/best_map50", "eval/map50", KEPT_TAG, STEP_PEAK_TAG, PEAK_TAG, TIME_TAG)


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


class Placed(Protocol):
    """Anything the tables place by section, group and BN mode: a Run, or a row of averages."""

    section: tuple[str, ...]
    group: tuple[str, ...]
    mode: str


def order(value: str, known: tuple[str, ...]) -> tuple[int, str]:
    """Sort key: the values in `known` first, in that order, then any other alphabetically."""
    return (known.index(value) if value in known else len(known), value)


def run_key(item: Placed) -> tuple:
    """Tables list sections, then tasks, then methods in TLlib's order, then Train, Eval, Tune, Deploy."""
    task, method = item.group
    return item.section, task, order(method, METHOD_ORDER), order(item.mode, MODE_ORDER)


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def read_config(run_dir: Path, name: str) -> dict | None:
    """The run's configuration from its config.json; None, with a warning, if it is missing or unusable."""
    path = run_dir / CONFIG
    if not path.is_file():
        _warn(f"run {name}: no {CONFIG}: skipped")
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        _warn(f"run {name}: cannot read {path} ({error}): skipped")
        return None
    except json.JSONDecodeError as error:
        _warn(f"run {name}: {path} is not JSON ({error}): skipped")
        return None
    if not isinstance(config, dict):
        _warn(f"run {name}: {path} is not a JSON object: skipped")
        return None
    return config


def run_directories(root: Path) -> list[Path]:
    """Every directory under `root` (itself included) that holds a config.json or TensorBoard event files."""
    marked = [*root.rglob(CONFIG), *root.rglob(EVENT_FILES)]
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
        config = read_config(run_dir, name)
        if config is None:
            continue
        scalars = {
            tag: sorted((event.step, event.value) for event in events.Scalars(tag)) for tag in events.Tags()["scalars"]
        }
        run = Run(name, config, scalars, (run_dir / RESULTS).is_file())
        expected = DETECTION_SCALARS if config.get("method") == "detection" else EXPECTED_SCALARS
        missing = tuple(tag for tag in expected if tag not in scalars and (run.finished or tag != expected[0]))
        if missing:
            lacking[missing].append(name)
        runs.append(run)
    for missing, names in lacking.items():
        _warn(f"{len(names)} run(s) lack {', '.join(missing)} (shown as '-'): {', '.join(names)}")
    return runs


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
