"""Memory figures of training steps: peak of a window, and the peak of one step above what it started with."""

from __future__ import annotations

import itertools
import os
import resource
from collections.abc import Callable
from typing import TypeVar

import torch
from torch.profiler import ProfilerActivity, profile

from experiments.utils import synchronize

MIB = 2**20
# Kineto (torch.profiler's C++ back end) prints to stderr every message at or above KINETO_LOG_LEVEL: 0 verbose,
# 1 info, 2 warning, 3 stage, 4 error (a CPU-only machine is one: "gpuGetDeviceCount failed"), 5 USDT trace marks
# ("profiler_start", "profiler_stop" around every profile). 6 is above them all: the memory probe of the first step
# prints nothing. It only quiets Kineto's own logger: Python's warnings and torch's TORCH_WARN still show.
KINETO_QUIET = "6"
T = TypeVar("T")


def peak_memory_mib(device: torch.device) -> float:
    """GPU: peak allocated since the last reset_peak_memory. CPU: peak resident set size of the process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux reports KiB


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def step_peak_mib(step: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """Run `step` and return its result with the peak MiB of tensor memory allocated during it above what was
    allocated before (gradients and optimizer state included): CUDA's allocator counter after a reset, or on CPU
    the running sum of torch.profiler's memory events (op-granular)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = step()
        synchronize(device)
        return result, (torch.cuda.max_memory_allocated(device) - before) / MIB
    os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_QUIET)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        result = step()
    events = sorted(profiler.events(), key=lambda event: event.time_range.start)
    return result, max(itertools.accumulate((e.self_cpu_memory_usage for e in events), initial=0)) / MIB
