"""Keep BatchNorm layers on running statistics through model.train() (MMDetection's norm_eval).

Eval- and Tune-mode fine-tuning train a model whose pretrained BN layers must keep normalising with (and never
update) their running statistics, while the rest of the model (dropout, new heads) follows train()/eval().
"""

from __future__ import annotations

from functools import partial

from torch import nn

from .layers import is_bn_like


def _stay_in_eval(bn: nn.Module, mode: bool = True) -> nn.Module:
    bn.training = False
    for child in bn.children():
        child.train(mode)
    return bn


def freeze_bn_stats(module: nn.Module) -> list[str]:
    """Put every BN layer under `module` in eval mode for good; gamma and beta stay trainable. Returns their names."""
    frozen = []
    for name, bn in module.named_modules():
        if is_bn_like(bn):
            bn.train = partial(_stay_in_eval, bn)
            _stay_in_eval(bn, module.training)
            frozen.append(name)
    return frozen


def unfreeze_bn_stats(module: nn.Module) -> list[str]:
    """Undo freeze_bn_stats: BN layers follow train()/eval() again (and take `module`'s current mode)."""
    released = []
    for name, bn in module.named_modules():
        if isinstance(bn.__dict__.get("train"), partial) and bn.__dict__["train"].func is _stay_in_eval:
            del bn.train
            bn.train(module.training)
            released.append(name)
    return released
