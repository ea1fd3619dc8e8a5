"""References the tune tests check tune against, independent of how tune finds pairs: realistic BN statistics
(`randomize_bn`), the BNs a conv feeds, found by running the model (`bns_fed_directly_by_a_conv`), and the zoo of
torchvision and timm models the tests (and benchmarks/zoo.py) run. Torch and tune only: the tests of the torch-only
package need nothing else, and the survey (benchmarks/) checks its 250 models against the same oracle."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from tune.layers import is_bn_like

# The models the tune tests convert and check against Eval mode: torchvision's and timm's ('timm:NAME').
ZOO = (
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "vgg11_bn",
    "densenet121", "googlenet", "timm:resnet50", "timm:efficientnet_b0", "timm:mobilenetv3_small_100",
    "timm:regnety_002",
)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN-like layer non-trivial statistics and affine parameters, so a fold is really tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not is_bn_like(module) or getattr(module, "running_mean", None) is None:
                continue
            n = module.running_mean.numel()
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            if module.weight is not None:
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return model


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
