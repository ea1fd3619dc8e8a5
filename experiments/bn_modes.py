"""The paper's BN modes of the pretrained backbone (--bn-mode), and putting a backbone in one."""

from __future__ import annotations

from torch import nn

import tune

BN_MODES = ("train", "eval", "tune", "deploy")


def apply_bn_mode(backbone: nn.Module, mode: str) -> tune.Report | None:
    """Put the pretrained backbone's BN layers in the paper's `mode`; returns tune's report where it converts.

    train: batch statistics (untouched). eval: running statistics, frozen through train(). tune: eval, computed as
    folded convolutions. deploy: the statistics folded into the convs for good (new trainable conv weights).
    """
    if mode == "train":
        return None
    tune.freeze_bn_stats(backbone)
    if mode == "eval":
        return None
    return tune.turn_on(backbone, mode=mode)
