"""The models benchmarks run: randomly initialised torchvision or timm models whose BN layers hold realistic
statistics, and the zoo of models tune is tested and surveyed on."""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ZOO = (
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "vgg11_bn",
    "densenet121", "googlenet", "timm:resnet50", "timm:efficientnet_b0", "timm:mobilenetv3_small_100",
    "timm:regnety_002",
)



def random_model(name: str) -> nn.Module:
    """A randomly initialised model: a torchvision classification model, timm's when named 'timm:NAME', or one of
    the experiments' own backbones (e.g. 'dtn') with a 10-class linear head."""
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name.removeprefix("timm:"), pretrained=False)
    from experiments.models import LOCAL_ARCHS

    if name in LOCAL_ARCHS:
        backbone = LOCAL_ARCHS[name]()
        return nn.Sequential(backbone, nn.Linear(backbone.features, 10))
    return torchvision.models.get_model(name, weights=None)


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: Tensor, batches: int = 2) -> nn.Module:
    """Randomise BN affine parameters, then set running statistics to the true batch statistics of random inputs,
    so folding is tested on non-trivial values while activations stay well scaled (fp16 included)."""
    model.train()
    bns = [module for module in model.modules() if isinstance(module, BN_TYPES) and module.track_running_stats]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    for _ in range(batches):
        model(torch.randn_like(x))
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    return model.eval()
