"""Where a Tune step's time goes on a GPU: torch.profiler over a frozen ResNet-50's input-gradient step (the attack
workload, batch 32, 224 px) in Eval and Tune, float32 and bfloat16, printing per step the summed device time of the
profiled ops against their summed host time, and the ops with the most device time.

    python -m benchmarks.gpu_profile
"""

from __future__ import annotations

import copy

import torch
import torchvision
from torch.profiler import ProfilerActivity, profile

import tune

STEPS = 3


def attack_step(model: torch.nn.Module, x: torch.Tensor, dtype: str) -> None:
    """One input-gradient step, under bfloat16 autocast when `dtype` is 'bf16'."""
    x.grad = None
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()


def main() -> int:
    torch.manual_seed(0)
    model = torchvision.models.resnet50().cuda().eval().requires_grad_(False)
    tuned = copy.deepcopy(model)
    tune.turn_on(tuned)
    x = torch.randn(32, 3, 224, 224, device="cuda", requires_grad=True)
    for dtype in ("fp32", "bf16"):
        for name, module in (("eval", model), ("tune", tuned)):
            for _ in range(STEPS):
                attack_step(module, x, dtype)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(STEPS):
                    attack_step(module, x, dtype)
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
