"""Shared pieces of the experiment tests: a tiny configuration, engine processes, and readers for what a run
leaves behind."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

from experiments.dann import DANN
from experiments.finetune import FineTune

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
# ResNet-18 from scratch on 32-px crops, batch 4, two iterations, one epoch, every iteration logged.
TINY = ["-a", "resnet18", "--scratch", "-b", "4", "-i", "2", "--epochs", "1", "--resize-size", "32", "-j", "0",
        "--print-freq", "1", "--device", "cpu"]
# The uninterrupted reference runs (fixtures dann_reference, finetune_reference): two epochs each; DANN's windows of
# 4 iterations straddle the epoch boundary.
DANN_REFERENCE = ["-i", "6", "--epochs", "2", "--print-freq", "4"]
FINETUNE_REFERENCE = ["-i", "4", "--epochs", "2"]


def task_args(root: Path, log: Path, *extra: str, log_option: str = "--log") -> list[str]:
    """Command line of a tiny synthetic A -> D run logging to `log`; later options override earlier ones."""
    return [str(root), "-d", "synthetic", "-s", "A", "-t", "D", *TINY, log_option, str(log), *extra]


def start(method: str, argv: list[str], **options) -> subprocess.Popen:
    """`python -m experiments.<method> argv` as a separate process (its own process group), output as text."""
    return subprocess.Popen([sys.executable, "-m", f"experiments.{method}", *argv], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **options)


def wait_for_line(process: subprocess.Popen, prefix: str) -> None:
    """Read the process's stdout until a line starts with `prefix` (fail if it ends first)."""
    for line in process.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"the process ended before printing {prefix!r}: {process.communicate()[1]}")


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run directory as (step, value) pairs in the order TensorBoard reads them."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def saved_model(run_dir: Path) -> dict[str, Tensor]:
    """The model state of the run's checkpoint."""
    return torch.load(run_dir / "checkpoint.pt")["model"]


def assert_same_tensors(a: dict, b: dict, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Equal keys, and tensors equal within the tolerances (exactly by default); other entries equal."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], Tensor):
            torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=key)
        else:
            assert a[key] == b[key], key


def assert_same_curves(run: Path, reference: Path, skip: tuple[str, ...] = ("time/", "memory/")) -> None:
    """Both runs logged the same tags with the same steps, each once and in order, and the same values (wall-clock
    and memory tags: the same steps only)."""
    got, want = scalars(run), scalars(reference)
    assert got.keys() == want.keys()
    for tag, series in want.items():
        steps = [step for step, _ in got[tag]]
        assert steps == sorted(set(steps)) == [step for step, _ in series], tag
        if not tag.startswith(skip):
            assert got[tag] == series, tag


class AtCall:
    """A method that does something unusual at its `at`-th training forward (counted per instance)."""

    at = 0

    @classmethod
    def at_call(cls, at: int) -> type:
        return type(cls.__name__, (cls,), {"at": at})

    def counts(self) -> bool:
        """Count this call; whether it is the `at`-th."""
        self.calls = getattr(self, "calls", 0) + 1
        return self.calls == self.at


class ExplodesAtCall(AtCall, FineTune):
    """FineTune whose `at`-th training step has a NaN loss."""

    def forward(self, x_s, y_s, x_t=None):
        loss, figures = super().forward(x_s, y_s, x_t)
        return (loss * math.nan if self.counts() else loss), figures


class SignalsItselfAtCall(AtCall, DANN):
    """DANN that sends its own process SIGINT during its `at`-th training forward (a real signal, in-process)."""

    def forward(self, x_s, y_s, x_t=None):
        if self.counts():
            os.kill(os.getpid(), signal.SIGINT)
        return super().forward(x_s, y_s, x_t)
