"""One model's training step in every BN mode and against Tune mode's peers, measured (issue 5).

Every mode trains its own deep copy of one randomly initialised model (torchvision name, or timm:NAME) whose BN
layers hold real running statistics and non-trivial affine parameters, on the same batch. Per mode: the bytes
autograd keeps for backward, the step's peak memory, the step time (modes interleaved round-robin after warm-up)
and the gradient errors against a float64 Eval-mode reference, both as run and with the mode itself in float64.
The input requires grad in every mode alike, so that its gradient can be checked too. fp16 runs without loss
scaling, so its gradient errors include underflow; on CUDA, float32 convolutions use TF32 as PyTorch's default.

modes: the modes and the model they start from; measure: the figures; report: ratios, table, chart and JSON;
cli: the command line, run as `python -m experiments.benchmark`.
"""

from experiments.benchmark.cli import main
from experiments.benchmark.measure import gradients, max_relative_error, summarize
from experiments.benchmark.modes import MODES, Bench, Mode, build_model, calibrate_bn, prepare
from experiments.benchmark.report import format_table

__all__ = [
    "MODES",
    "Bench",
    "Mode",
    "build_model",
    "calibrate_bn",
    "format_table",
    "gradients",
    "main",
    "max_relative_error",
    "prepare",
    "summarize",
]
