"""What a training method is to the engine: a module around the classifier that returns one step's loss."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from experiments.models import Classifier


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Top-1 accuracy in percent."""
    return (logits.argmax(1) == labels).float().mean() * 100


class Method(nn.Module):
    """A training objective. `forward(x_s, y_s, x_t)` returns the loss to minimise and named figures to log.

    Subclasses set `name`, `adapts` (trains on unlabeled target batches too, which the engine then passes as x_t)
    and `bottleneck` (the classifier gets the protocol's 256-d bottleneck), and may add command-line options.
    """

    name: str
    adapts = False
    bottleneck = False

    def __init__(self, classifier: Classifier, args: argparse.Namespace) -> None:
        super().__init__()
        self.classifier = classifier

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Options (or defaults) of this method only; the engine's parser has the shared ones."""

    def forward(self, x_s: Tensor, y_s: Tensor, x_t: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class AdversarialMethod(Method):
    """The step DANN and CDAN share: one forward of source and target together, source cross-entropy plus
    trade_off x the transfer loss of the subclass, which sees the features and logits of both halves."""

    adapts = True
    bottleneck = True

    def __init__(self, classifier: Classifier, args: argparse.Namespace) -> None:
        super().__init__(classifier, args)
        self.trade_off = args.trade_off

    def transfer_loss(self, features: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """The adversarial loss and the domain discriminator's accuracy (percent)."""
        raise NotImplementedError

    def forward(self, x_s: Tensor, y_s: Tensor, x_t: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        logits, features = self.classifier(torch.cat([x_s, x_t]))
        source_logits = logits[: len(x_s)]
        cls_loss = F.cross_entropy(source_logits, y_s)
        transfer_loss, domain_acc = self.transfer_loss(features, logits)
        figures = {
            "cls_loss": cls_loss,
            "transfer_loss": transfer_loss,
            "source_acc": accuracy(source_logits, y_s),
            "domain_acc": domain_acc,
        }
        return cls_loss + self.trade_off * transfer_loss, figures
