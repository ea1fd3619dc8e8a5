"""Backbones of the experiments, without their classifier: torchvision's, timm's (imported only when asked for) and
the digits' DTN, with ImageNet or local weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torchvision
from torch import nn

from experiments.utils import ExperimentError

OWN_PREFIX = "classifier.backbone."  # where the backbone sits in the engine's checkpoints


class DTN(nn.Sequential):
    """TLlib's DTN for 28-32 px digits, at half its widths: three Conv(5x5, stride 2)-BN-Dropout-ReLU blocks of 32,
    64 and 128 channels, flattened (4 x 4 x 128 = 2,048 features at 28 px).

    Every conv feeds a BN, so all three are ConvBN pairs for Tune mode. Half width trains about three times faster
    than TLlib's 64-128-256 on a CPU for 2-5 points less MNIST -> UCI accuracy after 600 iterations; flattening, as
    TLlib does, beat global average pooling by 10-16 points.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), image_size: int = 28) -> None:
        layers: list[nn.Module] = []
        channels = 3
        for width, dropout in zip(widths, (0.1, 0.3, 0.5), strict=True):
            layers += [nn.Conv2d(channels, width, 5, stride=2, padding=2), nn.BatchNorm2d(width),
                       nn.Dropout2d(dropout), nn.ReLU(inplace=True)]
            channels = width
            image_size = (image_size + 1) // 2
        super().__init__(*layers, nn.Flatten())
        self.features = channels * image_size * image_size


LOCAL_ARCHS = {"dtn": DTN}  # this project's own backbones, built by name like the libraries' ones


def build_backbone(arch: str, pretrained: str | None = None, scratch: bool = False) -> tuple[nn.Module, int]:
    """The backbone `arch` ending in global pooling (or a flatten), without its classifier, and its feature size.

    `resnet50` names a torchvision model, `timm:efficientnet_b0` a timm one, `dtn` this project's digit network.
    Weights: ImageNet through the library (default), the local checkpoint `pretrained`, or random ones
    (`scratch`); `dtn` has no library weights, so it needs one of the last two.
    """
    fetch = not scratch and pretrained is None
    if arch in LOCAL_ARCHS:
        if fetch:
            raise ExperimentError(f"{arch} has no downloadable weights: pass --pretrained PATH (e.g. a checkpoint "
                                  f"of a run on another dataset) or --scratch")
        backbone = LOCAL_ARCHS[arch]()
        features = backbone.features
    else:
        backbone, features = _library_backbone(arch, fetch)
    if pretrained is not None:
        _load_local_weights(backbone, Path(pretrained))
    return backbone, features


def _library_backbone(arch: str, fetch: bool) -> tuple[nn.Module, int]:
    """A torchvision or timm model without its classifier, with ImageNet weights when `fetch`."""
    is_timm = arch.startswith("timm:")
    name = arch.removeprefix("timm:")
    if is_timm:
        import timm  # seconds to import: only for the runs that use it
    if not (timm.is_model(name) if is_timm else name in torchvision.models.list_models()):
        library = "timm" if is_timm else "torchvision (prefix timm: for a timm model)"
        raise ExperimentError(f"unknown architecture {arch!r} in {library}")
    try:
        if is_timm:
            backbone = timm.create_model(name, pretrained=fetch, num_classes=0)
            return backbone, backbone.num_features
        backbone = torchvision.models.get_model(name, weights=_imagenet_weights(name) if fetch else None)
        return backbone, _drop_last_linear(backbone)
    except OSError as error:
        raise ExperimentError(
            f"cannot fetch the ImageNet weights of {arch} ({error}): pass --pretrained PATH to load a local "
            f"checkpoint, or --scratch to start from random weights"
        ) from error


def _imagenet_weights(name: str) -> torchvision.models.WeightsEnum:
    """The original ImageNet weights where there are several (what TLlib's published numbers used)."""
    weights = torchvision.models.get_model_weights(name)
    return getattr(weights, "IMAGENET1K_V1", weights.DEFAULT)


def _drop_last_linear(model: nn.Module) -> int:
    """Replace the model's last Linear (its classifier) by Identity; return that layer's input size."""
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ExperimentError(f"{type(model).__name__} has no Linear classifier to remove")
    name, linear = linears[-1]
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, nn.Identity())
    return linear.in_features


def _load_local_weights(backbone: nn.Module, path: Path) -> None:
    """Load a state dict (bare, under 'state_dict'/'model', or an engine checkpoint's backbone) that must fit
    the backbone exactly, except for one left-over module: the checkpoint's classifier."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as error:
        raise ExperimentError(f"cannot read --pretrained {path}: {error}") from error
    state = state.get("state_dict", state.get("model", state))
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if any(key.startswith(OWN_PREFIX) for key in state):  # a checkpoint of this project's engine
        state = {key.removeprefix(OWN_PREFIX): value for key, value in state.items() if key.startswith(OWN_PREFIX)}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that differ
        raise ExperimentError(f"--pretrained {path} does not fit the backbone: {error}") from error
    if missing or len({key.rpartition(".")[0] for key in unexpected}) > 1:  # more left over than one classifier
        raise ExperimentError(f"--pretrained {path} does not fit the backbone: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
