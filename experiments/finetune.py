"""ERM: cross-entropy on labeled data alone. Source-only training for the domain-adaptation benchmarks (evaluated on
the target domain) and plain fine-tuning on CUB-200, FGVC-Aircraft and Stanford Cars (evaluated on the test split).

    python -m experiments.finetune data/office31 -d office31 -s A -t W --bn-mode tune
"""

from __future__ import annotations

import sys

import torch.nn.functional as F
from torch import Tensor

from experiments import engine
from experiments.method import Method, accuracy


class FineTune(Method):
    """ERM / fine-tuning: the head straight on the pooled backbone features (no bottleneck), trained with
    cross-entropy on the labeled (source) batch only."""

    name = "finetune"
    defaults = {"lr": 0.001, "lr_gamma": 0.0003, "wd": 5e-4}  # TLlib's source-only recipe; finetune.sh overrides

    def forward(self, x_s: Tensor, y_s: Tensor, x_t: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        logits, _ = self.classifier(x_s)
        loss = F.cross_entropy(logits, y_s)
        return loss, {"cls_loss": loss, "source_acc": accuracy(logits, y_s)}


if __name__ == "__main__":
    sys.exit(engine.main(FineTune))
