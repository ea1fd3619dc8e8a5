"""Where a Tune step's time goes on a GPU: torch.profiler over the benchmark's attack workload (a frozen ResNet-50,
the input's gradient alone, batch 32, 224 px) in Eval and Tune, float32 and bfloat16, printing per step the summed
device time of the profiled ops against their summed host time, and the ops with the most device time.

    python -m benchmarks.gpu_profile
"""

from __future__ import annotations

import copy

import torch
from torch.profiler import ProfilerActivity, profile

import tune
from benchmarks import workloads
from benchmarks.measure import AUTOCAST_DTYPES

STEPS = 3


def attack_step(model: torch.nn.Module, batch: workloads.Batch, dtype: str) -> None:
    """One step of the attack workload, under autocast when `dtype` names one."""
    batch.zero_grad()
    with torch.autocast("cuda", dtype=AUTOCAST_DTYPES.get(dtype), enabled=dtype in AUTOCAST_DTYPES):
        loss = batch.loss(model)
    loss.backward()


def main() -> int:
    torch.manual_seed(0)
    model, batch = workloads.build("resnet50", 32, 224, torch.device("cuda"), task="attack")
    tuned = copy.deepcopy(model)
    tune.turn_on(tuned)
    for dtype in ("float32", "bf16"):
        for name, module in (("eval", model), ("tune", tuned)):
            for _ in range(STEPS):
                attack_step(module, batch, dtype)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(STEPS):
                    attack_step(module, batch, dtype)
                torch.cuda.synchronize()
            events = prof.key_averages()
            device_ms = sum(e.self_device_time_total for e in events) / STEPS / 1e3
            host_ms = sum(e.self_cpu_time_total for e in events) / STEPS / 1e3
            print(f"== {dtype} {name}: device {device_ms:.1f} ms/step, host {host_ms:.1f} ms/step")
            for e in sorted(events, key=lambda e: -e.self_device_time_total)[:6]:
                print(f"   {e.key[:60]:60s} {e.self_device_time_total / STEPS / 1e3:7.2f} ms  x{e.count // STEPS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
