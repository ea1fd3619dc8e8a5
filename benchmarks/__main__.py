"""Benchmark one model's training step in every BN mode, and against Tune mode's peers.

    python -m benchmarks --model resnet50 --batch-size 16 --resolution 160 --dtype float32 \
        --device cuda --reps 30 --warmup 3 [--optimizer-step] [--modes ...] [--json out.json] [--png out.png]
    python -m benchmarks --preset host-bound          # where a step is almost only per-op host cost
    python -m benchmarks --model fasterrcnn_resnet50_fpn --batch-size 2 --resolution 512   # a detector

The command line: parse the options, measure, print the table, and write the JSON and the PNG when asked.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from benchmarks.measure import AUTOCAST_DTYPES, measure
from benchmarks.modes import MODES
from benchmarks.report import add_ratios, format_precision_table, format_table, metadata, plot, save, write_json
from benchmarks.workloads import DETECTORS, TASKS

# Named settings; options given on the command line win. host-bound: ResNet-50's 53 Conv->BN pairs with narrow
# 3x3 convs, batch 1 at 32 px on one thread, so a step is mostly the per-op cost a GPU step pays on the host (no
# Train mode: batch statistics of one 1x1 feature map do not exist).
# attack: the adversarial-example use (a frozen eval-mode ResNet-50, gradients for the input alone).
PRESETS = {
    "host-bound": dict(model="resnet50_narrow", batch_size=1, resolution=32, threads=1, reps=30,
                       modes=["eval", "tune", "deploy", "mmengine"]),
    "attack": dict(task="attack", model="resnet50", batch_size=16, resolution=160, reps=20,
                   modes=["eval", "tune", "deploy", "mmengine"]),
}


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options; the first line of this module's docstring is the help's description."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), help="named settings (explicit options still win)")
    parser.add_argument("--model", default="resnet50",
                        help=f"torchvision classifier, timm:NAME, resnet50_narrow, or one of {', '.join(DETECTORS)}")
    parser.add_argument("--task", choices=TASKS, default="train",
                        help="train: every gradient; attack: a classifier with frozen parameters, the input's "
                             "gradient alone (one PGD iteration)")
    parser.add_argument("--batch-size", type=_positive, default=16, help="images per step")
    parser.add_argument("--resolution", type=_positive, default=160, help="image side in pixels")
    parser.add_argument("--dtype", choices=["float32", *AUTOCAST_DTYPES], default="float32",
                        help="float32, or autocast to bf16/fp16 (no loss scaling)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=_positive, help="CPU threads (default: torch's)")
    parser.add_argument("--reps", type=_positive, default=20, help="timed steps per mode, interleaved round-robin")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per mode first")
    parser.add_argument("--optimizer-step", action="store_true", help="time an SGD step too")
    parser.add_argument("--no-grad-check", action="store_true",
                        help="skip the gradient check against float64 (it compiles compiled modes again)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="modes to measure")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, batch and labels")
    parser.add_argument("--json", type=Path, help="write metadata and every figure here")
    parser.add_argument("--png", type=Path, help="write a bar chart here")
    preset, _ = parser.parse_known_args(argv)
    if preset.preset:
        parser.set_defaults(**PRESETS[preset.preset])
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU is available here; use --device cpu")
    return args


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point: measure, print the table, write the JSON and the PNG when asked; returns the JSON.

    The JSON is rewritten (atomically) after every stage of the measurement with `"complete": false`, so that a run
    stopped by a time limit still leaves every mode it measured."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = metadata(args, argv)

    def document(results: dict[str, dict], complete: bool) -> dict:
        add_ratios(results)
        return {"meta": meta, "complete": complete, "results": results}

    def progress(results: dict[str, dict]) -> None:
        if args.json:
            write_json(document(results, complete=False), args.json)

    output = document(measure(args, progress), complete=True)
    print(format_table(output["results"]))
    precision = format_precision_table(output["results"])
    if precision:
        print("\nrelative L2 gradient error against float64, per kind (in parentheses: the mode in float64):")
        print(precision)
    if args.json:
        save(args.json, partial(write_json, output))
    if args.png:
        save(args.png, partial(plot, output["results"]))
    return output


if __name__ == "__main__":
    main()
