"""Shared pieces of the experiment tests: a tiny configuration and readers for what a run leaves behind."""

from __future__ import annotations

from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

# ResNet-18 from scratch on 32-px crops, batch 4, two iterations, one epoch, every iteration logged.
TINY = ["-a", "resnet18", "--scratch", "-b", "4", "-i", "2", "--epochs", "1", "--resize-size", "36",
        "--crop-size", "32", "-j", "0", "--print-freq", "1", "--device", "cpu"]


def task_args(root: Path, log: Path, *extra: str, log_option: str = "--log") -> list[str]:
    """Command line of a tiny synthetic A -> D run logging to `log`; later options override earlier ones."""
    return [str(root), "-d", "synthetic", "-s", "A", "-t", "D", *TINY, log_option, str(log), *extra]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run directory as (step, value) pairs, as TensorBoard reads them."""
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
