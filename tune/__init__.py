"""Tune mode for ConvBN blocks (arXiv 2305.11624): Eval-mode results with less memory and time.

    import tune
    tune.freeze_bn_stats(model)    # BN on running statistics, also through model.train()
    report = tune.turn_on(model)   # in place; print(report) says what was converted and why not

Depends on torch alone; copy this folder into your project.
"""

from .convert import MODES, STRATEGIES, turn_off, turn_on
from .discover import find_pairs
from .freeze import freeze_bn_stats, unfreeze_bn_stats
from .layers import is_bn_like
from .memory import kept_for_backward
from .report import Report

__all__ = [
    "MODES", "STRATEGIES", "Report", "find_pairs", "freeze_bn_stats", "is_bn_like", "kept_for_backward", "turn_off",
    "turn_on", "unfreeze_bn_stats",
]
