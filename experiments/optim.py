"""TLlib's optimisation: one SGD optimizer (Nesterov momentum; the pretrained backbone at 0.1x lr) and a learning
rate that decays every iteration, (1 + gamma i)^-decay, or drops by gamma at given epochs."""

from __future__ import annotations

import bisect
from collections.abc import Callable

import torch
from torch import nn

from experiments.method import Method


def parameter_groups(model: nn.Module, backbone: nn.Module, lr: float, backbone_scale: float) -> list[dict]:
    """Two optimizer groups: the backbone at `backbone_scale` x lr, everything else in `model` at lr."""
    in_backbone = {id(p) for p in backbone.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if id(p) in in_backbone], "lr": lr * backbone_scale},
        {"params": [p for p in trainable if id(p) not in in_backbone], "lr": lr},
    ]


def lr_lambda(iters_per_epoch: int, gamma: float, decay: float,
              decay_epochs: list[int] | None = None) -> Callable[[int], float]:
    """lr factor at iteration i: TLlib's inverse decay (1 + gamma i)^-decay, or steps of `gamma` at
    `decay_epochs`."""
    if decay_epochs:
        milestones = sorted(epoch * iters_per_epoch for epoch in decay_epochs)
        return lambda i: gamma ** bisect.bisect_right(milestones, i)
    return lambda i: (1 + gamma * i) ** -decay


def build(model: Method, config: dict) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer (backbone at the method's backbone_lr_scale x lr, 0.1 by default; 1x when trained from
    scratch) and its per-iteration schedule."""
    backbone_scale = 1.0 if config["scratch"] else model.backbone_lr_scale
    optimizer = torch.optim.SGD(parameter_groups(model, model.backbone, config["lr"], backbone_scale),
                                lr=config["lr"], momentum=config["momentum"], weight_decay=config["wd"],
                                nesterov=True)
    schedule = lr_lambda(config["iters_per_epoch"], config["lr_gamma"], config["lr_decay"], config["lr_decay_epochs"])
    warmup = config.get("warmup_iters", 0)  # a method's option (detection): linear warm-up over the first iterations
    if warmup:
        decay = schedule
        schedule = lambda i: min(1.0, (i + 1) / warmup) * decay(i)  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
