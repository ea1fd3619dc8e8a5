"""Tune mode for ConvBN blocks (arXiv 2305.11624): Eval-mode results with less memory and time.

    import tune
    tune.freeze_bn_stats(model)    # BN on running statistics, also through model.train()
    report = tune.turn_on(model)   # in place; print(report) says what was converted and why not

Depends on torch alone; copy this folder into your project.

Reading order: fold.py (the math: W', b' and the gradients, one autograd node per pair), recompute.py (the other
way, for tiny feature maps), convert.py (turn_on / turn_off: the strategy per call, the conv and BN forwards that
agree on it), discover.py (which Conv -> BN pairs are safe to convert), explain.py (why the others are not, in
sentences), layers.py (which modules count as conv or BN), geometry.py (a conv's call arguments), freeze.py,
memory.py, report.py, compat.py.
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
