"""A command that prints, for each model tune is tested on (benchmarks.models.ZOO), the pairs Tune mode converts
and the memory kept for backward in Eval, Tune and Deploy mode.

    python -m benchmarks.pairs_and_memory --batch-size 8 --resolution 160
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

import tune
from benchmarks.models import ZOO, calibrate_bn, random_model


def kept_mib(model: nn.Module, x: torch.Tensor) -> float:
    """MiB autograd keeps for backward in one forward (parameters and buffers excluded)."""
    with tune.kept_for_backward(exclude=model) as kept:
        model(x)
    return kept.nbytes / 2**20


def survey(name: str, batch_size: int, resolution: int) -> dict:
    """Pairs converted, BN layers left alone, and kept-for-backward MiB in Eval, Tune and Deploy mode."""
    x = torch.randn(batch_size, 3, resolution, resolution)
    model = calibrate_bn(random_model(name), x)
    tuned, deployed = copy.deepcopy(model), copy.deepcopy(model)
    report = tune.turn_on(tuned)
    tune.turn_on(deployed, mode="deploy")
    eval_mib, tune_mib, deploy_mib = (kept_mib(m, x) for m in (model, tuned, deployed))
    return dict(model=name, pairs=len(report.pairs), skipped=len(report.skipped), eval=eval_mib, tune=tune_mib,
                deploy=deploy_mib)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ZOO))
    parser.add_argument("-b", "--batch-size", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=160)
    args = parser.parse_args(argv)
    print(f"kept for backward, batch {args.batch_size}, {args.resolution}px, float32, CPU")
    print(f"{'model':30} {'pairs':>5} {'left':>5} {'Eval MiB':>9} {'Tune MiB':>9} {'Deploy MiB':>10} "
          f"{'Tune/Eval':>9} {'Tune/Deploy':>11}")
    rows = []
    for name in args.models:
        row = survey(name, args.batch_size, args.resolution)
        rows.append(row)
        print(f"{name:30} {row['pairs']:5d} {row['skipped']:5d} {row['eval']:9.1f} {row['tune']:9.1f} "
              f"{row['deploy']:10.1f} {row['tune'] / row['eval']:9.3f} {row['tune'] / row['deploy']:11.4f}")
    return rows


if __name__ == "__main__":
    main()
