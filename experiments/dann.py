"""DANN (Ganin et al., 2016): a domain discriminator on the bottleneck features, trained adversarially through
gradient reversal, so the features stop telling source from target.

    python -m experiments.dann data/office31 -d office31 -s A -t W --bn-mode tune
"""

from __future__ import annotations

import sys

from torch import Tensor

from experiments import engine
from experiments.classifier import Classifier
from experiments.method import AdversarialMethod
from experiments.modules import DomainAdversary


class DANN(AdversarialMethod):
    """DANN: the discriminator sees the bottleneck features themselves."""

    name = "dann"

    def __init__(self, classifier: Classifier, trade_off: float = 1.0) -> None:
        super().__init__(classifier, trade_off)
        self.adversary = DomainAdversary(classifier.features_dim)

    def transfer_loss(self, features: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        return self.adversary(features)


if __name__ == "__main__":
    sys.exit(engine.main(DANN))
