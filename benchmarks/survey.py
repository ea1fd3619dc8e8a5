"""Survey tune on every torchvision classification model, 173 timm architectures that use BatchNorm and the
Hugging Face transformers vision families with a BatchNorm or a frozen BN ('hf:CLASS', benchmarks/hf_models.py).

    nice -n 19 python -m benchmarks.survey [--out results/survey_DATE.json] [--models NAME ...] [--jobs 1]
                                           [--update [--resume]] [--summary] [--timeout 900] [--memory-gib 12]

Each model runs in a subprocess of its own, under a time and an address-space limit, and is checked for: no crash;
float64 equality with Eval mode (output, input gradient and every parameter gradient) and of Deploy's output;
converted pairs against the hook-based count of BNs fed directly by a conv (`bns_fed_directly_by_a_conv`); memory
kept for backward in Tune mode at most 1.01x Deploy's; torch.save / torch.load and copy.deepcopy of the model after
turn_on in both modes. Every model's record goes to the JSON, written after each model (an interrupted survey keeps
what it measured), and a summary table is printed. Research tooling: not part of the test suite.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

import tune
from benchmarks.hf_models import HF_MODELS, hf_model
from benchmarks.models import SURVEY_TIMM, bns_fed_directly_by_a_conv, random_model, randomize_bn
from tune.layers import is_bn_like

RTOL = 1e-9  # float64: Tune and Deploy agree with Eval to rounding
RTOL_FLOAT32 = 1e-3  # the few models too large for float64 under the memory limit
ERRORS = ("forward_error", "input_grad_error", "grad_error")
KEPT_LIMIT = 1.01  # Tune may keep at most this much more than Deploy for backward
RESOLUTIONS = (32, 64, 96, 128, 160, 224, 299)
# Reasons a pair the hook count finds is left alone that tune cannot fix by design (anything else is a finding).
BY_DESIGN = {
    "is also used by": "the conv's output has another user",
    "times in one forward": "the conv or BN is called more than once",
    "custom forward": "the conv has a forward of its own",
    "torch.fx cannot trace": "torch.fx cannot trace the module around it",
    "registered under several names": "a module registered under several names",
    "forward hooks": "forward hooks on the conv or BN",
    "read outside the two modules": "conv or BN parameters read outside the modules",
    "different convs on different paths": "different convs feed it on different paths",
    "not known to be a frozen BatchNorm": "a module with BN's buffers whose forward is not a frozen BN's",
}


def survey_models() -> list[str]:
    """The timm architectures of the survey ('timm:NAME'), one of each family in turn, then every torchvision
    classification model, smallest first, then the transformers models: a survey cut short has seen the most kinds
    of models that use BatchNorm."""
    families: dict[str, list[str]] = {}
    for name in SURVEY_TIMM:
        families.setdefault(re.split(r"[\d_]", name)[0], []).append(f"timm:{name}")
    in_turn = [name for round_ in itertools.zip_longest(*families.values()) for name in round_ if name]
    torchvision_models = sorted(torchvision.models.list_models(module=torchvision.models),
                                key=lambda n: torchvision.models.get_model_weights(n).DEFAULT.meta["num_params"])
    return in_turn + torchvision_models + [f"hf:{name}" for name in HF_MODELS]


# ---- One model, in its own process.


class Stages:
    """Which check a model is in, and the seconds each finished check took."""

    def __init__(self) -> None:
        self.now, self.seconds, self._start = "start", {}, time.perf_counter()

    def enter(self, stage: str) -> None:
        end = time.perf_counter()
        self.seconds[self.now] = round(self.seconds.get(self.now, 0.0) + end - self._start, 2)
        self.now, self._start = stage, end
        print(f"stage: {stage}", file=sys.stderr, flush=True)  # the parent reads it when the model runs out of time


def _tensors(output: object) -> list[Tensor]:
    """The floating-point tensors of a model's output, however nested (tuples, lists, dicts)."""
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _run(model: nn.Module, x: Tensor, backward: bool) -> dict:
    """Outputs of one forward and the bytes autograd kept for backward; with `backward`, the input and parameter
    gradients of a fixed loss too."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(0)
    with tune.kept_for_backward(exclude=model) as kept:
        outputs = _tensors(model(x))
    result = {"outputs": [o.detach() for o in outputs], "kept": kept.nbytes}
    if backward:
        sum(((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view(o.shape)).sum() + 0.1 * o.square().sum())
            for o in outputs).backward()
        result["input_grad"] = x.grad
        result["grads"] = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
    return result


def _error(got: Tensor, want: Tensor, floor: float = 1e-300) -> float:
    """max |got - want| / max(max |want|, floor): inf when the shapes differ or a value is not finite."""
    if got.shape != want.shape:
        return float("inf")
    if not want.numel():
        return 0.0
    got, want = got.double(), want.double()
    error = ((got - want).abs().max() / want.abs().max().clamp_min(floor)).item()
    return error if error == error and torch.isfinite(want).all() else float("inf")


def _worst(got: list[Tensor], want: list[Tensor]) -> float:
    """The largest `_error` over a model's outputs (inf when their number differs)."""
    if len(got) != len(want):
        return float("inf")
    return max((_error(g, w) for g, w in zip(got, want, strict=True)), default=0.0)


def _pickles(model: nn.Module, x: Tensor, want: list[Tensor]) -> dict:
    """Errors of a torch.save/torch.load round trip and of a deepcopy: None when the copy runs and computes `want`."""
    checks = {}
    for check in ("save", "deepcopy"):
        try:
            if check == "save":
                with tempfile.TemporaryDirectory() as folder:  # a file, not memory: large models fit the limit
                    torch.save(model, Path(folder) / "model.pt")
                    clone = torch.load(Path(folder) / "model.pt", weights_only=False)
            else:
                clone = copy.deepcopy(model)
            torch.manual_seed(0)
            with torch.no_grad():
                error = _worst(_tensors(clone(x)), want)
            del clone
            checks[check] = None if error <= RTOL else f"output differs by {error:.1e}"
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            checks[check] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return checks


def _resolution(model: nn.Module) -> int:
    """The smallest survey resolution the model runs at in train and in eval mode (batch 2, float32, no gradients),
    else the input size a timm model declares (attention with a fixed grid runs at that size only); train mode may
    update its BN statistics, which are randomised afterwards."""
    failure = None
    declared = getattr(model, "pretrained_cfg", {}).get("input_size", (None,))[-1]
    for size in (*RESOLUTIONS, *([declared] if declared and declared not in RESOLUTIONS else [])):
        try:
            with torch.no_grad():
                for training in (True, False):
                    model.train(training)(torch.randn(2, 3, size, size))
            return size
        except Exception as exc:  # noqa: BLE001 - too small for this model: try the next size
            failure = exc
    raise RuntimeError(f"runs at none of {RESOLUTIONS} nor at its declared input size: {failure}")


def check_model(name: str, stages: Stages, memory_bytes: float) -> dict:
    """Every check of the survey on one randomly initialised model; `stages` says how far it got, and how fast.
    Every forward starts from the same seed, so dropout draws the same masks in each mode.

    A model without BatchNorm is only checked to be left alone and to copy after turn_on (in float32, forward only):
    nothing of it is converted."""
    stages.enter("build")
    model = hf_model(name) if name.startswith("hf:") else random_model(name)
    record = {"bn_layers": sum(1 for m in model.modules() if is_bn_like(m)),
              "parameters": sum(p.numel() for p in model.parameters())}
    record["resolution"] = size = _resolution(model)
    x = torch.randn(2, 3, size, size)
    if not record["bn_layers"]:
        return {**record, **_check_left_alone(model, x, stages)}
    randomize_bn(model)  # statistics from data can leave channels with a variance near 0: ill-conditioned
    stages.enter("hook count")
    eligible = bns_fed_directly_by_a_conv(model, x)
    # Eval mode as fine-tuning uses it: BNs on running statistics, the rest (dropout, timm's caches) in train mode.
    # float64, unless the model and two sets of gradients would not fit in half the memory limit.
    dtype = torch.float64 if 3 * 8 * record["parameters"] < memory_bytes / 2 else torch.float32
    record.update(dtype=str(dtype).removeprefix("torch."), rtol=RTOL if dtype == torch.float64 else RTOL_FLOAT32)
    model, x = model.to(dtype).train(), x.to(dtype)
    tune.freeze_bn_stats(model)
    stages.enter("eval")
    reference = _run(model, x, backward=True)
    stages.enter("turn_on")
    report = tune.turn_on(model)
    converted = {bn for _, bn in report.pairs}
    reasons = dict(report.skipped)
    record.update(pairs=len(report.pairs), skipped=report.skipped, hook_count=len(eligible),
                  missed={bn: reasons.get(bn, "not reported") for bn in sorted(eligible - converted)},
                  extra=sorted(converted - eligible))
    stages.enter("tune")
    tuned = _run(model, x, backward=True)
    record.update(_errors(tuned, reference), kept_eval=reference["kept"], kept_tune=tuned["kept"])
    if max(record[k] for k in ERRORS) > RTOL:
        stages.enter("rounding noise")
        record["rounding_noise"] = _rounding_noise(model, x, reference)
    del reference
    stages.enter("tune copies")
    record["tune_copies"] = _pickles(model, x, tuned["outputs"])
    stages.enter("deploy")
    tune.turn_on(model, mode="deploy")
    deployed = _run(model, x, backward=False)
    record.update(kept_deploy=deployed["kept"], deploy_error=_worst(deployed["outputs"], tuned["outputs"]))
    stages.enter("deploy copies")
    record["deploy_copies"] = _pickles(model, x, deployed["outputs"])
    return record


def _errors(got: dict, want: dict) -> dict[str, float]:
    """How far one forward/backward is from another: outputs, input gradient, the worst parameter gradient."""
    grads, wanted = got["grads"], want["grads"]
    # A parameter whose gradient is a million times smaller than the largest holds rounding noise: compare it to that.
    floor = 1e-6 * max((g.abs().max().item() for g in wanted.values()), default=0.0)
    worst_grad = max((_error(grads[k], wanted[k], floor) for k in wanted), default=0.0)
    return {"forward_error": _worst(got["outputs"], want["outputs"]),
            "input_grad_error": _error(got["input_grad"], want["input_grad"]),
            "grad_error": worst_grad if grads.keys() == wanted.keys() else float("inf")}


NOISE_SAMPLES = 3  # draws of Eval's rounding noise; the largest is the limit


def _rounding_noise(model: nn.Module, x: Tensor, reference: dict) -> dict[str, float]:
    """How far Eval itself moves, at most over NOISE_SAMPLES tries, when every BN variance changes by a random
    relative 1e-14 (some 50 float64 roundings): a deep random network can amplify rounding past RTOL, and Tune's own
    roundings are then measured against this spread, not against one draw of it."""
    tuned = tune.turn_off(model)
    generator = torch.Generator().manual_seed(1)
    variances = [m.running_var for m in model.modules() if is_bn_like(m) and m.running_var is not None]
    saved = [v.clone() for v in variances]
    noise: dict[str, float] = {}
    for _ in range(NOISE_SAMPLES):
        with torch.no_grad():
            for v, old in zip(variances, saved, strict=True):
                v.copy_(old).mul_(1 + 1e-14 * (2 * torch.rand(v.shape, generator=generator, dtype=v.dtype) - 1))
        sample = _errors(_run(model, x, backward=True), reference)
        noise = {k: max(noise.get(k, 0.0), value) for k, value in sample.items()}
    with torch.no_grad():
        for v, old in zip(variances, saved, strict=True):
            v.copy_(old)
    if tuned:
        tune.turn_on(model)
    return noise


def _check_left_alone(model: nn.Module, x: Tensor, stages: Stages) -> dict:
    """turn_on in either mode changes nothing in a model without BatchNorm, and the model still copies."""
    record = {}
    model.eval()
    with torch.no_grad():
        want = _tensors(model(x))
    for mode in tune.MODES:
        stages.enter(mode)
        report = tune.turn_on(model, mode=mode)
        record.update(pairs=len(report.pairs), skipped=report.skipped)
        record[f"{mode}_copies"] = _pickles(model, x, want)
    return record


# How a child makes tune compute the pairs: as turn_on chooses by feature-map size, or every call one way.
STRATEGIES = {"auto": None, "fold": 0, "recompute": 10**12}


def _out_of_memory(exc: Exception) -> bool:
    """Whether `exc` is the child's memory limit speaking (Python's MemoryError or torch's allocator refusing)."""
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(exc)


def _child(name: str, memory_bytes: float, strategy: str) -> None:
    """Survey one model and print its record as the last line of stdout (a crash is a record too)."""
    if STRATEGIES[strategy] is not None:
        tune.convert.RECOMPUTE_MAX_POSITIONS = STRATEGIES[strategy]
    stages = Stages()
    try:
        record = {"status": "ok", **check_model(name, stages, memory_bytes)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the parent collects every model
        status = ("out-of-memory" if _out_of_memory(exc) else "model-error" if stages.now == "build" else "crash")
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
                              cwd=Path(__file__).resolve().parent.parent)
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


# ---- The summary.


def findings(record: dict) -> dict[str, str]:
    """What is wrong with one model's record, by check (empty when every check passed)."""
    if record["status"] != "ok":
        return {record["status"]: record.get("error", record.get("stage", ""))}
    found = {}
    for mode in ("tune", "deploy"):
        for check, error in record[f"{mode}_copies"].items():
            if error:
                found[f"{check} after turn_on ({mode})"] = error
    if not record["bn_layers"]:
        if record["pairs"] or record["skipped"]:
            found["turn_on changed a model without BatchNorm"] = str(record["pairs"])
        return found
    noise = record.get("rounding_noise", {})
    noise = {**noise, "deploy_error": noise["forward_error"]} if noise else {}  # Deploy is compared to Tune's output
    limits = {k: max(record["rtol"], noise.get(k, 0.0)) for k in (*ERRORS, "deploy_error")}
    wrong = [f"{k} {record[k]:.1e}" + (f" (rounding noise {noise[k]:.1e})" if k in noise else "")
             for k, limit in limits.items() if record[k] > limit]
    if wrong:
        found["float64 mismatch"] = ", ".join(wrong)
    if record["kept_tune"] > KEPT_LIMIT * record["kept_deploy"]:
        found["kept > 1.01x Deploy"] = f"{record['kept_tune']} > {record['kept_deploy']} bytes"
    fixable = {bn: why for bn, why in record["missed"].items() if miss_category(why) is None}
    if fixable:
        found["pairs missed, fixable"] = "; ".join(f"{bn}: {why}" for bn, why in fixable.items())
    if record["extra"]:
        found["pairs the hook count does not see"] = ", ".join(record["extra"])
    return found


def miss_category(reason: str) -> str | None:
    """Why a pair is missed by design, or None when the reason is one tune could fix."""
    return next((category for key, category in BY_DESIGN.items() if key in reason), None)


def summary(records: list[dict]) -> str:
    """A Markdown table of the survey: models, checks that failed (and on which models), pairs and misses."""
    ok = [r for r in records if r["status"] == "ok"]
    with_bn = [r for r in ok if r["bn_layers"]]
    failed: dict[str, list[str]] = {}
    for record in records:
        for check in findings(record):
            failed.setdefault(check, []).append(record["model"])
    misses = Counter(miss_category(why) or "fixable" for r in with_bn for why in r["missed"].values())

    def names(models: list[str]) -> str:
        return ", ".join(models[:6]) + (f" and {len(models) - 6} more" if len(models) > 6 else "")

    def by_library(models: list[dict]) -> str:
        counts = Counter(r["model"].partition(":")[0] if ":" in r["model"] else "torchvision" for r in models)
        return ", ".join(f"{counts[k]} {k}" for k in ("torchvision", "timm", "hf") if counts[k])

    rows = [("models surveyed", f"{len(records)} ({by_library(records)})"),
            ("models with BatchNorm", f"{len(with_bn)} ({by_library(with_bn)})")]
    for check in ("crash", "timeout", "out-of-memory", "model-error", "save after turn_on (tune)",
                  "deepcopy after turn_on (tune)", "save after turn_on (deploy)", "deepcopy after turn_on (deploy)",
                  "turn_on changed a model without BatchNorm", "float64 mismatch", "kept > 1.01x Deploy",
                  "pairs missed, fixable", "pairs the hook count does not see"):
        models = failed.get(check, [])
        rows.append((check, f"{len(models)}" + (f": {names(models)}" if models else "")))
    rows += [("pairs converted", str(sum(r["pairs"] for r in with_bn))),
             ("BNs fed directly by a conv (hook count)", str(sum(r["hook_count"] for r in with_bn)))]
    rows += [(f"missed: {category}", str(count)) for category, count in sorted(misses.items())]
    wide = [r for r in with_bn if r["dtype"] == "float64" and "rounding_noise" not in r]
    worst = max((max(r[k] for k in (*ERRORS, "deploy_error")) for r in wide), default=0.0)
    rows.append(("compared with Eval's own rounding noise (past 1e-9)",
                 names([r["model"] for r in with_bn if "rounding_noise" in r]) or "0"))
    rows.append(("compared in float32 (too large for float64)", names([r["model"] for r in with_bn
                                                                       if r["dtype"] != "float64"]) or "0"))
    ratios = [r["kept_tune"] / r["kept_deploy"] for r in with_bn if r["kept_deploy"]]
    rows += [("largest float64 error vs Eval (well-conditioned models)", f"{worst:.1e}"),
             ("largest kept Tune / Deploy", f"{max(ratios, default=0.0):.4f}")]
    return "\n".join(["| check | models |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


# ---- The command.


def _write(path: Path, records: list[dict], meta: dict) -> None:
    """Replace `path` in one step (a temporary file renamed), so an interrupted write leaves the last whole JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump({"meta": meta, "models": records}, tmp, indent=1, default=str)
    os.replace(tmp.name, path)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--strategy", choices=list(STRATEGIES), default="auto",
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


if __name__ == "__main__":
    main()
