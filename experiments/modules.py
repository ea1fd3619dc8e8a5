"""Building blocks shared by the adversarial methods (DANN, CDAN): gradient reversal and the domain adversary."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, coefficient: float) -> Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.coefficient * grad, None


class WarmStartGradientReversal(nn.Module):
    """Identity forward; backward multiplies by -lambda_i with lambda_i = 2 / (1 + exp(-i / warm_up)) - 1.

    lambda rises from 0 (so early, noisy discriminator gradients do not disturb the features) towards 1. The
    training-step count i is module state (extra state in the state dict), so checkpoints restore it.
    """

    def __init__(self, warm_up: int = 1000) -> None:
        super().__init__()
        self.warm_up = warm_up
        self.step = 0

    @property
    def coefficient(self) -> float:
        return 2 / (1 + math.exp(-self.step / self.warm_up)) - 1

    def forward(self, x: Tensor) -> Tensor:
        coefficient = self.coefficient
        if self.training:
            self.step += 1
        return _ReverseGradient.apply(x, coefficient)

    def get_extra_state(self) -> dict:
        return {"step": self.step}

    def set_extra_state(self, state: dict) -> None:
        self.step = state["step"]


class DomainDiscriminator(nn.Sequential):
    """Linear(in, 1024)-BN-ReLU-Linear(1024, 1024)-BN-ReLU-Linear(1024, 1): the protocol's discriminator.

    It returns logits: the protocol's final Sigmoid is folded into the loss (binary cross-entropy with logits, the
    same value computed without overflow).
    """

    def __init__(self, in_features: int, hidden: int = 1024) -> None:
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )


class DomainAdversary(nn.Module):
    """Gradient reversal, then a discriminator telling the source half (label 1) from the target half (label 0).

    Minimising the returned loss trains the discriminator, while the reversed gradient trains the features to fool
    it. Inputs are source and target stacked in equal halves; `weight` optionally weighs each sample (CDAN+E).
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.grl = WarmStartGradientReversal()
        self.discriminator = DomainDiscriminator(in_features)

    def forward(self, features: Tensor, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The adversarial loss and the discriminator's accuracy in percent."""
        logits = self.discriminator(self.grl(features)).squeeze(1)
        labels = torch.zeros_like(logits)
        labels[: len(labels) // 2] = 1
        loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weight)
        accuracy = ((logits > 0).float() == labels).float().mean() * 100
        return loss, accuracy
