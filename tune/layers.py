"""Which modules Tune mode understands, and how to read them.

Conv-like: nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d and nn.Linear (and subclasses that keep the stock forward, or
whose forward only pads to TensorFlow's 'same' first, like timm's Conv2dSame).
BN-like: every torch BatchNorm (1d/2d/3d, SyncBatchNorm, subclasses with the stock forward), timm's BatchNormAct2d and
SyncBatchNormAct (dropout and activation applied after the normalisation), and the frozen variants of torchvision
and timm, whose affine parameters are buffers. timm and torchvision are recognised by class name and home package,
so importing tune imports neither.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin

from .geometry import has_stock_forward, pads_to_same

_STOCK_BN_FORWARDS = {_BatchNorm.forward, nn.SyncBatchNorm.forward}
# (package, class name) -> (affine parameters are buffers, dropout + activation follow the normalisation)
_LIBRARY_BNS = {
    ("timm", "BatchNormAct2d"): (False, True),
    ("timm", "SyncBatchNormAct"): (False, True),
    ("timm", "FrozenBatchNormAct2d"): (True, True),
    ("torchvision", "FrozenBatchNorm2d"): (True, False),
}


def _library_kind(module: nn.Module) -> tuple[bool, bool] | None:
    cls = type(module)
    return _LIBRARY_BNS.get((cls.__module__.split(".")[0], cls.__name__))


def is_conv_like(module: nn.Module) -> bool:
    """A convolution or linear layer (whatever its forward): these are leaves when discovering pairs."""
    return isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))


def is_bn_like(module: nn.Module) -> bool:
    """A BatchNorm of torch, timm or torchvision (whatever its forward)."""
    return isinstance(module, _BatchNorm) or _library_kind(module) is not None


def _uninitialized(module: nn.Module) -> bool:
    return isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()


def conv_problem(conv: nn.Module) -> str | None:
    """Why this conv-like module cannot be folded into, or None."""
    if _uninitialized(conv):
        return "its conv is a lazy module that is not initialised yet"
    if not has_stock_forward(conv) and not pads_to_same(conv):
        return f"its conv {type(conv).__name__} has a custom forward (not just 'same' padding, then a plain conv)"
    return None


def bn_problem(bn: nn.Module) -> str | None:
    """Why this BN-like module can never normalise with running statistics the way Tune folds them, or None."""
    if _library_kind(bn) is None and type(bn).forward not in _STOCK_BN_FORWARDS:
        return f"{type(bn).__name__} has a custom forward"
    if _uninitialized(bn):
        return "lazy BatchNorm that is not initialised yet"
    if isinstance(bn, _BatchNorm) and (not bn.track_running_stats or bn.running_mean is None):
        return "track_running_stats=False: it always normalises with batch statistics"
    return None


def pair_problem(conv: nn.Module, bn: nn.Module) -> str | None:
    """Why this conv and BN, each foldable on its own, cannot be folded together, or None."""
    problem = conv_problem(conv) or bn_problem(bn)
    if problem:
        return problem
    out_channels = conv.out_features if isinstance(conv, nn.Linear) else conv.out_channels
    if out_channels != bn.running_mean.numel():
        return f"conv has {out_channels} output channels but the BN has {bn.running_mean.numel()} features"
    if conv._forward_hooks or bn._forward_pre_hooks:
        return "forward hooks on the conv output or BN input would see the folded result"
    return None


def always_running_stats(bn: nn.Module) -> bool:
    """Frozen BNs (torchvision, timm) have no training mode: they always normalise with running statistics."""
    kind = _library_kind(bn)
    return kind is not None and kind[0]


def has_activation(bn: nn.Module) -> bool:
    """timm's BN+activation layers apply dropout and an activation after normalising."""
    kind = _library_kind(bn)
    return kind is not None and kind[1]
