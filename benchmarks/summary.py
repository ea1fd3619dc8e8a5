"""One table from several benchmark JSON files: each configuration's modes, with time, memory and ops relative to
Eval and Deploy, so that a GPU check reads at a glance.

    python -m benchmarks.summary results/gpu_*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = ("config", "mode", "ms/step", "vs eval", "vs deploy", "step peak MiB", "vs eval", "kept MiB", "vs eval",
           "aten ops", "vs eval")


def _number(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def configuration(meta: dict) -> str:
    """'resnet50 b64/224px float32 cuda' from a benchmark's metadata."""
    args = meta["args"]
    return f"{args['model']} b{args['batch_size']}/{args['resolution']}px {args['dtype']} {args['device']}"


def rows(document: dict) -> list[list[str]]:
    """The table rows of one benchmark document: one per mode, failed and missing modes with their status."""
    config = configuration(document["meta"])
    table = []
    for mode, record in document["results"].items():
        if record["status"] != "ok":
            table.append([config, mode, record["status"], *[""] * (len(COLUMNS) - 3)])
            continue
        vs_eval, vs_deploy = record.get("vs_eval", {}), record.get("vs_deploy", {})
        table.append([
            config, mode,
            _number(record.get("time_ms"), "{:.1f}"), _number(vs_eval.get("time_ms"), "{:.2f}x"),
            _number(vs_deploy.get("time_ms"), "{:.2f}x"),
            _number(record.get("step_peak_mib"), "{:.0f}"), _number(vs_eval.get("step_peak_mib"), "{:.2f}x"),
            _number(record.get("kept_mib"), "{:.0f}"), _number(vs_eval.get("kept_mib"), "{:.2f}x"),
            _number(record.get("aten_ops"), "{:.0f}"), _number(vs_eval.get("aten_ops"), "{:.2f}x"),
        ])
    return table


def to_markdown(documents: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for document in documents for row in rows(document)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="benchmark JSON files (python -m benchmarks --json)")
    args = parser.parse_args(argv)
    documents = []
    for path in args.files:
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            print(f"error: cannot read benchmark results {path}: {error}", file=sys.stderr)
            return 1
    print(to_markdown(documents))
    return 0


if __name__ == "__main__":
    sys.exit(main())
