"""CDAN (Long et al., 2018): the domain discriminator sees features conditioned on the class predictions
(their multilinear map), so the alignment respects the multimodal class structure.

    python -m experiments.cdan data/office31 -d office31 -s A -t W --bn-mode tune [--randomized] [--entropy]
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import Tensor

from experiments import engine
from experiments.classifier import Classifier
from experiments.method import AdversarialMethod, Options
from experiments.modules import DomainAdversary
from experiments.options import positive_int


class CDAN(AdversarialMethod):
    """CDAN: the discriminator sees the features f conditioned on p = softmax(logits) (no gradient): the flattened
    outer product p (x) f, or with --randomized its projection (f R_f) * (p R_g) / sqrt(d) with fixed Gaussian R_f,
    R_g. With --entropy, confident samples weigh more: w = 1 + exp(-H(p)), normalised to sum to the batch size."""

    name = "cdan"

    @classmethod
    def add_arguments(cls, parser: Options) -> None:
        super().add_arguments(parser)
        parser.add_argument("--randomized", action="store_true", help="randomized multilinear map (large p (x) f)")
        parser.add_argument("--randomized-dim", type=positive_int, default=1024,
                            help="output size d of the randomized map")
        parser.add_argument("--entropy", action="store_true", help="entropy conditioning (CDAN+E)")

    def __init__(self, classifier: Classifier, trade_off: float = 1.0, randomized: bool = False,
                 randomized_dim: int = 1024, entropy: bool = False) -> None:
        super().__init__(classifier, trade_off)
        self.randomized, self.entropy = randomized, entropy
        if self.randomized:
            self.register_buffer("r_f", torch.randn(classifier.features_dim, randomized_dim))
            self.register_buffer("r_g", torch.randn(classifier.num_classes, randomized_dim))
            map_dim = randomized_dim
        else:
            map_dim = classifier.features_dim * classifier.num_classes
        self.adversary = DomainAdversary(map_dim)

    def conditioned(self, features: Tensor, predictions: Tensor) -> Tensor:
        if self.randomized:
            return (features @ self.r_f) * (predictions @ self.r_g) / math.sqrt(self.r_f.shape[1])
        return torch.bmm(predictions.unsqueeze(2), features.unsqueeze(1)).flatten(1)

    def transfer_loss(self, features: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        predictions = F.softmax(logits, dim=1).detach()
        weight = None
        if self.entropy:
            entropy = -(predictions * torch.log(predictions + 1e-5)).sum(1)
            weight = 1 + torch.exp(-entropy)
            weight = weight / weight.sum() * len(weight)
        return self.adversary(self.conditioned(features, predictions), weight)


if __name__ == "__main__":
    sys.exit(engine.main(CDAN))
