"""The command line: python -m experiments.report LOGDIR [--out DIR] [--benchmark JSON]."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from experiments.atomic import write_atomically
from experiments.report import __doc__ as PACKAGE_DOC
from experiments.report import detection
from experiments.report.figures import plot
from experiments.report.sweep import BENCHMARK, load_benchmark, load_runs
from experiments.report.table import summarize, to_markdown


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: write report.md and the figures, print the tables and the paths; warnings and errors go to
    stderr as one line each."""
    parser = argparse.ArgumentParser(description=PACKAGE_DOC.splitlines()[0])
    parser.add_argument("logdir", type=Path, help="sweep directory holding one sub-directory per run")
    parser.add_argument("--out", type=Path, help="where to write report.md and the figures (default: LOGDIR)")
    parser.add_argument("--benchmark", type=Path, action="append",
                        help=f"a `python -m benchmarks --json` file to quote (default: LOGDIR/{BENCHMARK} if present)")
    args = parser.parse_args(argv)
    absent = [path for path in args.benchmark or [] if not path.is_file()]
    if absent:
        print(f"error: --benchmark {absent[0]} does not exist; write it with python -m benchmarks ... --json "
              f"{absent[0]}, or leave the option out", file=sys.stderr)
        return 2
    default = args.logdir / BENCHMARK
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runs = load_runs(args.logdir)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        paths = args.benchmark or ([default] if default.is_file() else [])
        benchmarks = [bench for bench in map(load_benchmark, paths) if bench is not None]
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if not runs:
        print(f"error: no usable runs under {args.logdir} (see the warnings above)", file=sys.stderr)
        return 2
    classification = [run for run in runs if not detection.is_detection(run)]
    rows = summarize(classification, benchmarks)
    out = args.out or args.logdir
    out.mkdir(parents=True, exist_ok=True)
    text = to_markdown(classification, rows, benchmarks) if classification or benchmarks else ""
    text += detection.to_markdown(runs)
    images = plot(classification, rows, out, benchmarks) + detection.plot(runs, out)
    report = out / "report.md"
    images_md = "".join(f"![{path.stem}]({path.name})\n" for path in images)
    write_atomically(report, f"# Sweep report: {args.logdir}\n\n{text}\n{images_md}".encode())
    print(text)
    for path in (report, *images):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
