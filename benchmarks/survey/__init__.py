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

The package, by job: ordering.py (which models, in what order), checks.py (every check on one model), isolation.py
(one model per subprocess), findings.py (what counts as a finding, the summary table), cli.py (the command).
"""

from __future__ import annotations

from benchmarks.survey.checks import RTOL, Stages, check_model
from benchmarks.survey.cli import main
from benchmarks.survey.findings import findings, miss_category, summary
from benchmarks.survey.isolation import _out_of_memory, run_isolated
from benchmarks.survey.ordering import survey_models

__all__ = ["RTOL", "Stages", "_out_of_memory", "check_model", "findings", "main", "miss_category", "run_isolated",
           "summary", "survey_models"]
