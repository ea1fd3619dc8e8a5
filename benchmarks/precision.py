"""Tune mode's arithmetic precision against Eval mode's, pair by pair.

Every Conv -> BN pair of a model is run alone, in Eval and in Tune mode, in float32 or under autocast, on the conv
input and the output gradient that the pair sees in one float64 step of the whole model, and its gradients (conv
input, conv weight, conv bias, BN gamma, BN beta) are compared with the same pair's in float64. Inside one pair no
ReLU or max-pool decision can flip, so the figures show the arithmetic of each mode; a whole deep network's
gradients (`python -m benchmarks`) also carry the decisions that rounding flips, which are the same for every mode.

    python -m benchmarks.precision --model resnet50 --batch-size 8 --resolution 128 [--dtype bf16] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

import tune
from benchmarks import workloads
from benchmarks.measure import AUTOCAST_DTYPES
from benchmarks.report import metadata, write_json

KINDS = ("input", "conv weight", "conv bias", "BN gamma", "BN beta")
MODES = ("eval", "tune")


def pair_inputs(model: nn.Module, pairs: list[tuple[str, str]], batch: workloads.Batch) -> dict[str, tuple]:
    """For every pair (by BN name): the conv input and the gradient of the BN output in one float64 step."""
    model64, batch64 = copy.deepcopy(model).double(), batch.float64()
    seen: dict[str, list] = {bn_name: [] for _, bn_name in pairs}
    handles = []
    for conv_name, bn_name in pairs:
        def keep_input(module: nn.Module, args: tuple, name: str = bn_name) -> None:
            seen[name].append(args[0].detach().clone())

        def keep_output_grad(module: nn.Module, args: tuple, output: Tensor, name: str = bn_name) -> None:
            if output.requires_grad:
                output.register_hook(lambda grad: seen[name].append(grad.detach().clone()))

        handles.append(model64.get_submodule(conv_name).register_forward_pre_hook(keep_input))
        handles.append(model64.get_submodule(bn_name).register_forward_hook(keep_output_grad))
    batch64.loss(model64).backward()
    for handle in handles:
        handle.remove()
    return {name: tuple(values) for name, values in seen.items() if len(values) == 2}


def block_gradients(conv: nn.Module, bn: nn.Module, x: Tensor, grad: Tensor, mode: str, dtype: str) -> dict:
    """Gradients of one pair run alone: input, conv weight and bias, BN gamma and beta, as float64 tensors."""
    block = copy.deepcopy(nn.Sequential(conv, bn)).eval()
    if dtype == "float64":
        block, x, grad = block.double(), x.double(), grad.double()
    else:
        block, x, grad = block.float(), x.float(), grad.float()
    if mode == "tune":
        tune.turn_on(block)
    x = x.clone().requires_grad_()
    cast = torch.autocast(x.device.type, dtype=AUTOCAST_DTYPES[dtype]) if dtype in AUTOCAST_DTYPES else nullcontext()
    with cast:
        output = block(x)
    output.backward(grad.to(output.dtype))
    tensors = {"input": x.grad, "conv weight": block[0].weight.grad, "conv bias": getattr(block[0].bias, "grad", None),
               "BN gamma": getattr(bn_parameter(block[1], "weight"), "grad", None),
               "BN beta": getattr(bn_parameter(block[1], "bias"), "grad", None)}
    return {kind: t.double() for kind, t in tensors.items() if t is not None}


def bn_parameter(bn: nn.Module, name: str) -> nn.Parameter | None:
    value = getattr(bn, name, None)
    return value if isinstance(value, nn.Parameter) else None


def measure(model: nn.Module, batch: workloads.Batch, dtype: str, worst: int = 3) -> dict:
    """Per mode and kind: the relative L2 error over all pairs together, and the pairs with the largest errors."""
    pairs = tune.find_pairs(model).pairs
    inputs = pair_inputs(model, pairs, batch)
    squared = {mode: {kind: [0.0, 0.0] for kind in KINDS} for mode in MODES}
    per_pair: dict[str, list] = {mode: [] for mode in MODES}
    for conv_name, bn_name in pairs:
        if bn_name not in inputs:
            continue
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        x, grad = inputs[bn_name]
        reference = block_gradients(conv, bn, x, grad, "eval", "float64")
        for mode in MODES:
            grads = block_gradients(conv, bn, x, grad, mode, dtype)
            for kind, ref in reference.items():
                error, size = (grads[kind] - ref).square().sum().item(), ref.square().sum().item()
                squared[mode][kind][0] += error
                squared[mode][kind][1] += size
                per_pair[mode].append((kind, bn_name, (error / size) ** 0.5 if size else 0.0))
    result = {"pairs": len(inputs)}
    for mode in MODES:
        errors = {kind: (e / s) ** 0.5 for kind, (e, s) in squared[mode].items() if s > 0}
        largest = {kind: sorted(((err, name) for k, name, err in per_pair[mode] if k == kind), reverse=True)[:worst]
                   for kind in errors}
        result[mode] = {"relative_l2": errors, "worst_pairs": largest}
    return result


def format_table(result: dict) -> str:
    """Markdown: relative L2 error per kind, Eval beside Tune, and Tune / Eval."""
    kinds = [kind for kind in KINDS if kind in result["eval"]["relative_l2"]]
    lines = ["| kind | Eval | Tune | Tune / Eval | Tune's worst pair |", "|---|---|---|---|---|"]
    for kind in kinds:
        ev, tu = result["eval"]["relative_l2"][kind], result["tune"]["relative_l2"][kind]
        worst_error, worst_name = result["tune"]["worst_pairs"][kind][0]
        ratio = f"{tu / ev:.2f}" if ev else "n/a"
        lines.append(f"| {kind} | {ev:.1e} | {tu:.1e} | {ratio} | {worst_name} ({worst_error:.1e}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: measure one model and print (and write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="torchvision classifier or timm:NAME")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--dtype", choices=["float32", *AUTOCAST_DTYPES], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write metadata and figures here")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model, batch = workloads.classification(args.model, args.batch_size, args.resolution, torch.device(args.device))
    result = measure(model, batch, args.dtype)
    print(f"{result['pairs']} pairs, {args.dtype}: relative L2 error of each pair's gradients against float64")
    print(format_table(result))
    if args.json:
        meta = {**metadata(args, argv), "command": shlex.join(["python", "-m", "benchmarks.precision", *argv])}
        write_json({"meta": meta, "results": result}, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
