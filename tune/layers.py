"""Which modules Tune mode understands, and how to read them.

Conv-like: nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d and nn.Linear (and subclasses that keep the stock forward).
BN-like: every torch BatchNorm (1d/2d/3d, SyncBatchNorm, subclasses with the stock forward), timm's BatchNormAct2d and
SyncBatchNormAct (dropout and activation applied after the normalisation), and the frozen variants of torchvision
and timm, whose affine parameters are buffers. timm and torchvision are recognised by class name and home package,
so importing tune imports neither.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin

from .fold import ConvGeometry

_STOCK_CONV_FORWARDS = {
    cls.forward
    for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                nn.Linear)
}
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
    return isinstance(module, nn.modules.conv._ConvNd | nn.Linear)


def is_bn_like(module: nn.Module) -> bool:
    """A BatchNorm of torch, timm or torchvision (whatever its forward)."""
    return isinstance(module, _BatchNorm) or _library_kind(module) is not None


def _uninitialized(module: nn.Module) -> bool:
    return isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()


def conv_problem(conv: nn.Module) -> str | None:
    """Why this conv-like module cannot be folded into, or None."""
    if type(conv).forward not in _STOCK_CONV_FORWARDS:
        return f"its conv {type(conv).__name__} has a custom forward"
    if _uninitialized(conv):
        return "its conv is a lazy module that is not initialised yet"
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


def batched_ndim(conv: nn.Module) -> int:
    """Dimensions of a batched input: folding is done only then (a BN's channel axis is 1)."""
    return 2 if isinstance(conv, nn.Linear) else len(conv.kernel_size) + 2


def weight_layout(conv: nn.Module) -> ConvGeometry:
    """The part of the geometry that says where a weight's output channels are (all a permanent fold needs)."""
    if isinstance(conv, nn.Linear):
        return ConvGeometry(linear=True)
    return ConvGeometry(transposed=conv.transposed, groups=conv.groups)


def static_geometry(conv: nn.Module) -> ConvGeometry | None:
    """The conv's geometry when it does not depend on the input (no input padding, no output_size), else None."""
    if not isinstance(conv, nn.Linear) and (conv.transposed or conv.padding_mode != "zeros" or conv.padding == "same"):
        return None
    return conv_geometry(conv, None, None)[0]  # these branches never read the input


def conv_geometry(
    conv: nn.Module, x: Tensor | None, output_size: list[int] | None
) -> tuple[ConvGeometry, Tensor | None]:
    """The explicit geometry of one call of `conv`, and its input after any padding the conv applies itself.

    String padding ('same', 'valid') and non-zero padding modes become explicit integer padding, padding the input
    first where the conv does so ('same' with an even kernel pads one extra element on the right, as torch does).
    """
    if isinstance(conv, nn.Linear):
        return ConvGeometry(linear=True), x
    spatial = len(conv.kernel_size)
    common = dict(stride=tuple(conv.stride), dilation=tuple(conv.dilation), groups=conv.groups)
    if conv.transposed:
        output_padding = conv._output_padding(
            x, output_size, conv.stride, conv.padding, conv.kernel_size, spatial, conv.dilation
        )
        return ConvGeometry(padding=tuple(conv.padding), transposed=True,
                            output_padding=tuple(output_padding), **common), x
    if conv.padding_mode != "zeros":
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = (0,) * spatial
    elif conv.padding == "valid":
        padding = (0,) * spatial
    elif conv.padding == "same":
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        padding = tuple(t // 2 for t in totals)
        extra = [t - 2 * (t // 2) for t in totals]
        if any(extra):
            x = F.pad(x, [p for e in reversed(extra) for p in (0, e)])
    else:
        padding = tuple(conv.padding)
    return ConvGeometry(padding=padding, output_padding=(0,) * spatial, **common), x
