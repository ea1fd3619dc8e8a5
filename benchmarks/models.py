"""The models benchmarks run: randomly initialised torchvision or timm models whose BN layers hold realistic
statistics, the zoo of models tune is tested and surveyed on, and an fx-free count of the BNs a conv feeds."""

from __future__ import annotations

import copy

import torch
import torchvision
from torch import Tensor, nn

from tune.layers import is_bn_like

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ZOO = (
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "vgg11_bn",
    "densenet121", "googlenet", "timm:resnet50", "timm:efficientnet_b0", "timm:mobilenetv3_small_100",
    "timm:regnety_002",
)


def random_model(name: str) -> nn.Module:
    """A randomly initialised model: a torchvision classification model, or timm's when named 'timm:NAME'."""
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name.removeprefix("timm:"), pretrained=False)
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


def bns_fed_directly_by_a_conv(model: nn.Module, x: Tensor) -> set[str]:
    """An oracle independent of torch.fx: run the model (a copy, in train and in eval mode) and see which BN-like
    module receives exactly the output tensor of a conv or linear layer. `x` needs a batch of 2 or more."""
    fed = set()
    for training in (True, False):
        fed |= _fed_in_mode(copy.deepcopy(model).train(training), x)
    return fed


def _fed_in_mode(model: nn.Module, x: Tensor) -> set[str]:
    conv_outputs, fed = [], set()
    handles = [m.register_forward_hook(lambda mod, args, out: conv_outputs.append(out))
               for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    for name, module in model.named_modules():
        if is_bn_like(module):
            handles.append(module.register_forward_pre_hook(
                lambda mod, args, name=name: fed.add(name) if args and any(args[0] is o for o in conv_outputs)
                else None))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return fed
