"""Small helpers of the engine: user-facing errors, distributed set-up, random state, timing, window means."""

from __future__ import annotations

import os
import random
from collections import defaultdict

import numpy as np
import torch
import torch.distributed as dist


class ExperimentError(Exception):
    """A failure the user can act on: the command line prints its message and exits non-zero, no traceback."""


def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); return rank, world size and device.

    gloo on CPU, nccl on GPU, where each rank takes the GPU of its LOCAL_RANK.
    """
    target = torch.device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, target
    if target.type == "cuda":
        target = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(target)
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, target


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) alike; every rank gets the same seed, so ranks draw alike."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Everything a resumed run needs to draw the same random numbers as an uninterrupted one, in types that
    torch.load(weights_only=True) accepts."""
    name, keys, *rest = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, keys.tolist(), *rest), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class WindowMeter:
    """Running means of named values since the last reset: what one logging window reports.

    Its sums go into checkpoints, so a window that straddles an interruption reports what it would have without.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def update(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] += value
        self.count += 1

    def means(self) -> dict[str, float]:
        return {name: total / max(self.count, 1) for name, total in self.sums.items()}

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        self.sums.update(state["sums"])
        self.count = state["count"]
