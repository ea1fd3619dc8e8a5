"""One model per subprocess, under a time and an address-space limit: a crash or a hang is a record, not the end."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.survey.checks import Stages, check_model

# How a child makes tune compute the pairs: as turn_on chooses by feature-map size, or every call one way.
# Stages that run only the model's own code (before turn_on): an error there is the model's, not tune's
MODEL_STAGES = ("build", "eval")


def _out_of_memory(exc: Exception) -> bool:
    """Whether `exc` is the child's memory limit speaking (Python's MemoryError or torch's allocator refusing)."""
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(exc)


def _child(name: str, memory_bytes: float, strategy: str) -> None:
    """Survey one model and print its record as the last line of stdout (a crash is a record too)."""
    stages = Stages()
    try:
        record = {"status": "ok", **check_model(name, stages, memory_bytes, strategy)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the parent collects every model
        status = ("out-of-memory" if _out_of_memory(exc) else "model-error" if stages.now in MODEL_STAGES else "crash")
        record = {"status": status, "stage": stages.now,
                  "error": f"{type(exc).__name__} in {stages.now}: {str(exc)[:300]}"}
    stages.enter("done")
    record["seconds"] = round(sum(stages.seconds.values()), 1)
    record["stage_seconds"] = stages.seconds
    print(json.dumps(record, default=str))


def run_isolated(name: str, timeout: float, memory_gib: float, strategy: str = "auto", threads: int = 1) -> dict:
    """Survey one model in a subprocess limited to `timeout` seconds and `memory_gib` GiB of address space, on
    `threads` CPU threads."""
    limit = int(memory_gib * 2**30)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks.survey", "--child", name,
                               "--memory-gib", str(memory_gib), "--strategy", strategy], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=limit_memory,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                              cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired as timeout_error:
        partial = timeout_error.stderr or ""
        stages = [line for line in (partial if isinstance(partial, str) else partial.decode()).splitlines()
                  if line.startswith("stage: ")]
        return {"model": name, "status": "timeout", "error": stages[-1] if stages else "stage: start",
                "seconds": round(time.perf_counter() - start, 1)}
    lines = done.stdout.strip().splitlines()
    try:
        record = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = done.stderr.strip().splitlines()[-3:]
        status = "out-of-memory" if "MemoryError" in done.stderr or done.returncode == -9 else "crash"
        record = {"status": status, "returncode": done.returncode, "error": " | ".join(tail)[-400:],
                  "seconds": round(time.perf_counter() - start, 1)}
    return {"model": name, **record}
