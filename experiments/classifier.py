"""The classifier every method trains: the backbone, an optional bottleneck, and a linear head."""

from __future__ import annotations

from torch import Tensor, nn


class Classifier(nn.Module):
    """backbone -> [bottleneck Linear-BN-ReLU] -> linear head; returns the logits and the features the head saw."""

    def __init__(self, backbone: nn.Module, backbone_dim: int, num_classes: int, bottleneck_dim: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        if bottleneck_dim:
            self.bottleneck = nn.Sequential(
                nn.Linear(backbone_dim, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU()
            )
        else:
            self.bottleneck = nn.Identity()
        self.features_dim = bottleneck_dim or backbone_dim
        self.num_classes = num_classes
        self.head = nn.Linear(self.features_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.bottleneck(self.backbone(x))
        return self.head(features), features
