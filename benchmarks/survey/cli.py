"""The survey command: which models, where the JSON goes, how many at a time; written after every model."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch
import torchvision

import tune
from benchmarks.survey.checks import KEPT_LIMIT, RTOL
from benchmarks.survey.findings import findings, summary
from benchmarks.survey.isolation import _child, run_isolated
from benchmarks.survey.ordering import survey_models
from experiments.atomic import write_atomically


def _write(path: Path, records: list[dict], meta: dict) -> None:
    """Replace `path` in one step (a temporary file renamed), so an interrupted write leaves the last whole JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps({"meta": meta, "models": records}, indent=1, default=str).encode())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="Survey tune on torchvision, timm and transformers models.")
    parser.add_argument("--out", type=Path, help="JSON to write (default results/survey_DATE.json)")
    parser.add_argument("--models", nargs="+",
                        help="survey these models only (torchvision name, timm:NAME or hf:CLASS)")
    parser.add_argument("--update", action="store_true", help="rerun the models into an existing --out JSON")
    parser.add_argument("--resume", action="store_true",
                        help="with --update: survey only the models the JSON has no record of yet")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per model")
    parser.add_argument("--memory-gib", type=float, default=12, help="address-space limit per model")
    parser.add_argument("--jobs", type=int, default=1, help="models surveyed at the same time")
    parser.add_argument("--summary", action="store_true", help="only print the summary table of the --out JSON")
    parser.add_argument("--strategy", choices=list(tune.STRATEGIES), default="auto",
                        help="how pairs compute: as turn_on chooses by feature-map size (auto), or always fold, or "
                             "always recompute the conv output (at the survey's small inputs auto mostly recomputes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.memory_gib * 2**30, args.strategy)
        return []
    out = args.out or Path("results") / f"survey_{datetime.date.today().isoformat()}.json"
    records: dict[str, dict] = {}
    commands: list[str] = []  # every command that wrote into `out`, oldest first
    if args.update or args.summary:
        if not out.is_file():
            parser.exit(2, f"error: --update and --summary need an existing survey JSON; {out} does not exist\n")
        existing = json.loads(out.read_text())
        records = {r["model"]: r for r in existing["models"]}
        commands = existing.get("meta", {}).get("commands", [])
    elif out.exists():
        parser.exit(2, f"error: {out} exists; pass --update to rerun models into it, or choose another --out\n")
    if args.summary:
        print(summary(list(records.values())))
        return list(records.values())
    models = [name for name in args.models or survey_models() if not (args.resume and name in records)]
    command = " ".join(["python -m benchmarks.survey", *(argv if argv is not None else sys.argv[1:])])
    meta = {"commands": [*commands, command], "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "rtol": RTOL, "kept_limit": KEPT_LIMIT,
            "strategy": args.strategy}
    with ThreadPoolExecutor(args.jobs) as pool:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)  # more threads than cores spin-wait against each other
        running = [pool.submit(run_isolated, name, args.timeout, args.memory_gib, args.strategy, threads)
                   for name in models]
        for index, done in enumerate(as_completed(running), 1):
            record = done.result()
            records[record["model"]] = record
            _write(out, sorted(records.values(), key=lambda r: r["model"]), meta)
            problems = findings(record)
            print(f"[{index}/{len(models)}] {record['model']}: {record['status']}, {record['seconds']} s"
                  + (f", {record['pairs']} pairs / {record['hook_count']} hook-counted" if "hook_count" in record
                     else "")
                  + "".join(f"\n    {check}: {detail}" for check, detail in problems.items()), flush=True)
    print(summary(list(records.values())))
    print(f"wrote {out}")
    return list(records.values())
