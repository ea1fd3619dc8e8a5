"""What counts as a finding in a model's record, and the summary table of a survey."""

from __future__ import annotations

from collections import Counter

from benchmarks.survey.checks import ERRORS, KEPT_LIMIT

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


def findings(record: dict) -> dict[str, str]:
    """What is wrong with one model's record, by check (empty when every check passed)."""
    if record["status"] != "ok":
        return {record["status"]: record.get("error", record.get("stage", ""))}
    found = {}
    untouched = record.get("eval_copies", {})  # the model's own failures (a hook of a local function, say)
    for mode in ("tune", "deploy"):
        for check, error in record[f"{mode}_copies"].items():
            if error and error != untouched.get(check):
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
    rows.append(("save or deepcopy failing before turn_on too (not counted above)",
                 names([r["model"] for r in with_bn if any(r.get("eval_copies", {}).values())]) or "0"))
    ratios = [r["kept_tune"] / r["kept_deploy"] for r in with_bn if r["kept_deploy"]]
    rows += [("largest float64 error vs Eval (well-conditioned models)", f"{worst:.1e}"),
             ("largest kept Tune / Deploy", f"{max(ratios, default=0.0):.4f}")]
    return "\n".join(["| check | models |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])
