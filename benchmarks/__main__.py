"""Benchmark one model's training step in every BN mode, and against Tune mode's peers.

    python -m benchmarks --model resnet50 --batch-size 16 --resolution 160 --dtype float32 \
        --device cuda --reps 30 --warmup 3 [--optimizer-step] [--modes ...] [--json out.json] [--png out.png]

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
from benchmarks.report import add_ratios, format_table, metadata, plot, save, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options; the first line of this module's docstring is the help's description."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="torchvision model name, or timm:NAME")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--dtype", choices=["float32", *AUTOCAST_DTYPES], default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=20, help="timed steps per mode, interleaved round-robin")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per mode first")
    parser.add_argument("--optimizer-step", action="store_true", help="time an SGD step too")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write metadata and every figure here")
    parser.add_argument("--png", type=Path, help="write a bar chart here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point: measure, print the table, write the JSON and the PNG when asked; returns the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    results = measure(args)
    add_ratios(results)
    print(format_table(results))
    output = {"meta": metadata(args, argv), "results": results}
    if args.json:
        save(args.json, partial(write_json, output))
    if args.png:
        save(args.png, partial(plot, results))
    return output


if __name__ == "__main__":
    main()
