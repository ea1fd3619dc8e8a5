"""Which modules Tune mode understands, recognised by what they are and, where a class is unknown, by what they do.

Conv-like: nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d and nn.Linear (and subclasses that keep the stock forward, or
whose forward only pads to TensorFlow's 'same' first, like timm's Conv2dSame: `pads_to_same` checks that by running it).
BN-like: every torch BatchNorm (1d/2d/3d, SyncBatchNorm, subclasses with the stock forward), timm's BatchNormAct2d and
SyncBatchNormAct (dropout and activation applied after the normalisation), torchvision's and timm's frozen BNs, and
any other module that holds BatchNorm's four tensors as buffers (weight, bias, running_mean, running_var): the frozen
BNs of Hugging Face transformers (DETR's hard-codes eps = 1e-5), detectron2 and the like. Such a module is folded only
when `frozen_eps` has checked on probe inputs that its forward is the affine map of running statistics, and found its
eps. No library is imported: timm and torchvision are recognised by class name and home package.
"""

from __future__ import annotations

import copy
from weakref import WeakKeyDictionary

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin

STOCK_CONV_FORWARDS = {
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
_BN_BUFFERS = ("weight", "bias", "running_mean", "running_var")
# eps values tried, after the module's own `eps` attribute, for a frozen BN whose forward hard-codes its eps
_COMMON_EPS = (1e-5, 1e-3, 1e-4, 1e-6, 0.0)
_PROBED: WeakKeyDictionary = WeakKeyDictionary()  # module -> (batched input ndim, eps or None), probed once


def _library_kind(module: nn.Module) -> tuple[bool, bool] | None:
    cls = type(module)
    return _LIBRARY_BNS.get((cls.__module__.split(".")[0], cls.__name__))


def has_bn_buffers(module: nn.Module) -> bool:
    """The module holds weight, bias, running_mean and running_var as buffers of one length (a frozen BN's layout)."""
    tensors = [module._buffers.get(name) for name in _BN_BUFFERS]
    return all(isinstance(t, Tensor) and t.dim() == 1 for t in tensors) and len({t.numel() for t in tensors}) == 1


def is_conv_like(module: nn.Module) -> bool:
    """A convolution or linear layer (whatever its forward): these are leaves when discovering pairs."""
    return isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))


def is_bn_like(module: nn.Module) -> bool:
    """A BatchNorm of torch, timm or torchvision, or any module holding BatchNorm's buffers (whatever its forward)."""
    return isinstance(module, _BatchNorm) or _library_kind(module) is not None or has_bn_buffers(module)


def _foreign_frozen(bn: nn.Module) -> bool:
    return not isinstance(bn, _BatchNorm) and _library_kind(bn) is None


def has_stock_forward(conv: nn.Module) -> bool:
    """The conv runs the forward of its torch class (not one of its own)."""
    return type(conv).forward in STOCK_CONV_FORWARDS


def tensorflow_same_totals(conv: nn.Module, sizes: tuple[int, ...]) -> list[int]:
    """Padding per spatial axis that makes a strided conv's output ceil(size / stride) long (TensorFlow's 'same')."""
    return [max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            for size, k, s, d in zip(sizes, conv.kernel_size, conv.stride, conv.dilation)]


def _close(got: object, want: Tensor, rtol: float) -> bool:
    """Same shape and equal to `rtol` of the largest entry (an all-zero or NaN reference proves nothing)."""
    if not isinstance(got, Tensor) or got.shape != want.shape:
        return False
    scale = want.abs().max()
    return bool(scale > 0 and (got - want).abs().max() <= rtol * scale)


def pads_to_same(conv: nn.Module) -> bool:
    """Whether a conv with a forward of its own just pads each input to TensorFlow's 'same' and then runs the stock
    convolution (timm's Conv2dSame, and any layer like it): checked by running that forward on two probe inputs
    whose padding differs, so no library has to be imported. A forward that changes the module's state while probed
    is only called inside discovery, which restores the state afterwards."""
    if not isinstance(conv, nn.modules.conv._ConvNd) or has_stock_forward(conv) or conv.transposed:
        return False
    weight = conv.weight
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or any(conv.padding) or weight.is_meta:
        return False
    generator = torch.Generator().manual_seed(0)
    for extra in (1, 2):
        sizes = [(k - 1) * d + s + extra for k, s, d in zip(conv.kernel_size, conv.stride, conv.dilation)]
        x = torch.randn(2, conv.in_channels, *sizes, generator=generator).to(weight.device, weight.dtype)
        totals = tensorflow_same_totals(conv, tuple(sizes))
        padded = F.pad(x, [p for total in reversed(totals) for p in (total // 2, total - total // 2)])
        try:
            with torch.no_grad(), torch.autocast(weight.device.type, enabled=False):
                got = type(conv).forward(conv, x)
                want = torch.convolution(padded, weight, conv.bias, conv.stride, [0] * len(sizes), conv.dilation,
                                         False, [0] * len(sizes), conv.groups)
        except Exception:  # noqa: BLE001 - a forward that cannot run on a plain input is not a padded conv
            return False
        if not _close(got, want, 1e-3):
            return False
    return True


def _probe_eps(bn: nn.Module, ndim: int) -> float | None:
    """The eps with which `bn`'s forward computes (x - mean) * weight / sqrt(var + eps) + bias from its buffers, in
    training and eval mode, with and without autograd, on a float64 copy with random buffers; None if it does not."""
    probe = copy.deepcopy(bn).double()
    generator = torch.Generator().manual_seed(0)
    features = bn.running_mean.numel()
    shape = (features,)
    with torch.no_grad():
        probe.weight.copy_(torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5)
        probe.bias.copy_(torch.randn(shape, generator=generator, dtype=torch.float64))
        probe.running_mean.copy_(torch.randn(shape, generator=generator, dtype=torch.float64))
        probe.running_var.copy_(torch.rand(shape, generator=generator, dtype=torch.float64) * 1e-3 + 1e-4)
    x = torch.randn(2, features, *(3,) * (ndim - 2), generator=generator, dtype=torch.float64)
    outputs = []
    try:
        for training in (False, True):
            probe.train(training)
            for grad in (False, True):
                outputs.append(type(probe).forward(probe, x.clone().requires_grad_(grad)))
    except Exception:  # noqa: BLE001 - a forward that cannot run on a plain input is not a frozen BN
        return None
    own = getattr(bn, "eps", None)
    candidates = ([float(own)] if isinstance(own, (int, float)) else []) + list(_COMMON_EPS)
    for eps in candidates:
        want = F.batch_norm(x, probe.running_mean, probe.running_var, probe.weight, probe.bias, False, 0.0, eps)
        if all(_close(got, want, 1e-12) for got in outputs):
            return eps
    return None


def frozen_eps(bn: nn.Module, ndim: int) -> float | None:
    """For a module recognised only by its BN buffers: the eps its forward uses on `ndim`-dimensional inputs, once
    probed (see _probe_eps), or None when its forward is not a frozen BatchNorm's."""
    probed = _PROBED.get(bn)
    if probed is None or probed[0] != ndim:
        probed = (ndim, None if bn.running_mean.is_meta else _probe_eps(bn, ndim))
        _PROBED[bn] = probed
    return probed[1]


def bn_eps(bn: nn.Module) -> float:
    """The eps a BN-like module normalises with: its `eps` attribute, or what probing found (DETR's frozen BN has
    none and hard-codes 1e-5)."""
    if not _foreign_frozen(bn):
        return bn.eps
    probed = _PROBED.get(bn)
    return probed[1] if probed is not None else frozen_eps(bn, 4)  # a copy made after turn_on: probe it again


def _uninitialized(module: nn.Module) -> bool:
    return isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()


def conv_problem(conv: nn.Module) -> str | None:
    """Why this conv-like module cannot be folded into, or None (a sentence completing "it is left alone because")."""
    if _uninitialized(conv):
        return "its conv is a lazy module that is not initialised yet: run one forward before turn_on"
    if not has_stock_forward(conv) and not pads_to_same(conv):
        return (f"its conv {type(conv).__name__} has a custom forward (not just 'same' padding, then a plain conv), "
                f"so the folded convolution would not compute what that forward computes")
    return None


def bn_problem(bn: nn.Module, ndim: int) -> str | None:
    """Why this BN-like module can never normalise with running statistics the way Tune folds them, or None."""
    name = type(bn).__name__
    if _foreign_frozen(bn):
        if frozen_eps(bn, ndim) is None:
            return (f"{name} holds BatchNorm's buffers but its forward, run on a probe input, does not compute "
                    f"(x - running_mean) * weight / sqrt(running_var + eps) + bias for any usual eps, so it is not "
                    f"known to be a frozen BatchNorm")
        return None
    if _library_kind(bn) is None and type(bn).forward not in _STOCK_BN_FORWARDS:
        return f"{name} has a forward of its own, so folding its running statistics may not compute what it computes"
    if _uninitialized(bn):
        return "it is a lazy BatchNorm that is not initialised yet: run one forward before turn_on"
    if isinstance(bn, _BatchNorm) and (not bn.track_running_stats or bn.running_mean is None):
        return "it has track_running_stats=False, so it always normalises with batch statistics"
    return None


def pair_problem(conv: nn.Module, bn: nn.Module, ndim: int) -> str | None:
    """Why this conv and BN, each foldable on its own, cannot be folded together, or None."""
    problem = conv_problem(conv) or bn_problem(bn, ndim)
    if problem:
        return problem
    out_channels = conv.out_features if isinstance(conv, nn.Linear) else conv.out_channels
    if out_channels != bn.running_mean.numel():
        return (f"its conv has {out_channels} output channels but the BN has {bn.running_mean.numel()} features, "
                f"so the BN does not normalise the conv's channels one by one")
    if conv._forward_hooks or bn._forward_pre_hooks:
        return ("forward hooks on the conv's output or the BN's input would see the folded result: remove the hooks "
                "before turn_on to convert this pair")
    return None


def always_running_stats(bn: nn.Module) -> bool:
    """Frozen BNs (torchvision, timm, any verified look-alike) have no training mode: they always normalise with
    running statistics."""
    kind = _library_kind(bn)
    return kind[0] if kind is not None else _foreign_frozen(bn)


def has_activation(bn: nn.Module) -> bool:
    """timm's BN+activation layers apply dropout and an activation after normalising."""
    kind = _library_kind(bn)
    return kind is not None and kind[1]
