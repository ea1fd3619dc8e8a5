"""turn_on / turn_off: switch a model's Conv -> BN pairs to Tune (or Deploy) mode, in place.

Tune mode gives the conv and the BN module of each pair an instance-level `forward`: a functools.partial of a
module-level function and a small plan object, so deepcopy and pickling work. While the BN normalises with running
statistics, the conv computes BN(conv(x)) as one folded convolution (see fold.py) and the BN only applies what
follows its normalisation (timm's activation); while the BN is in training mode both run their class's own forward,
unchanged. No module, parameter or buffer is added or replaced, so state_dict, optimizers and the model's own
forward are untouched.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor, nn

from .compat import autocast_dtype, autocast_enabled, is_compiling
from .discover import find_pairs
from .fold import FoldedConv, folded_weight_and_bias
from .geometry import ConvGeometry, batched_ndim, conv_geometry, static_geometry, weight_layout
from .layers import always_running_stats, bn_eps, has_activation
from .recompute import conv_bn_recomputed
from .report import TRAINING_MODE_NOTE, Report

MODES = ("tune", "deploy")
# A call whose output has at most this many positions (batch x output pixels) recomputes the conv output in backward
# (recompute.py) instead of folding (fold.py): for so small a feature map one more conv costs less than the
# weight-sized fold. Chosen on CPU with the benchmark's host-bound preset and single layers (the crossover lies
# between 16 and 64 positions there); not yet tuned on a GPU. Either way the results are Eval mode's.
RECOMPUTE_MAX_POSITIONS = 64


@dataclass(eq=False)
class _Pair:
    """What a converted pair's two forwards share, worked out once at turn_on."""

    conv: nn.Module
    bn: nn.Module
    ndim: int  # folding needs a batched input (a BN's channel axis is 1)
    frozen: bool  # the BN has no training mode
    activation: bool  # the BN applies dropout and an activation after normalising
    geometry: ConvGeometry | None  # None: depends on the input
    stride_product: int  # input positions per output position; 0 for ConvTranspose, which always folds
    eps_value: float = 0.0  # the bn.eps that `eps` holds
    eps: Tensor | None = None  # bn.eps as a 0-dim CPU tensor: adding it costs one op, a Python float several
    warned: set = field(default_factory=set)  # shared by a turn_on's pairs: holds True once one warned


def _pair(conv: nn.Module, bn: nn.Module, warned: set) -> _Pair:
    stride_product = 1 if isinstance(conv, nn.Linear) else 0 if conv.transposed else math.prod(conv.stride)
    return _Pair(conv, bn, batched_ndim(conv), always_running_stats(bn), has_activation(bn), static_geometry(conv),
                 stride_product, warned=warned)


def _folds(pair: _Pair, x: Tensor) -> bool:
    """The one condition both modules test, so they always agree on whether this call is folded."""
    bn = pair.bn
    return x.dim() == pair.ndim and (pair.frozen or (not bn.training and bn.running_var is not None))


def _recomputes(pair: _Pair, x: Tensor) -> bool:
    limit = RECOMPUTE_MAX_POSITIONS * pair.stride_product * x.shape[1]
    return x.numel() <= limit and not is_compiling()  # compiled graphs plan their own memory: fold there


def _eps_tensor(pair: _Pair) -> Tensor:
    """bn.eps as a 0-dim CPU tensor of the fold's dtype (float32, or float64 for float64 statistics)."""
    bn, eps = pair.bn, pair.eps
    dtype = torch.float64 if bn.running_var.dtype == torch.float64 else torch.float32
    value = bn_eps(bn)
    if eps is None or pair.eps_value != value or eps.dtype != dtype:
        eps, pair.eps_value = torch.tensor(value, dtype=dtype), value
        pair.eps = eps
    return eps


def _tuned_conv_forward(pair: _Pair, x: Tensor, output_size: list[int] | None = None) -> Tensor:
    conv, bn = pair.conv, pair.bn
    args = (x,) if output_size is None else (x, output_size)
    if not _folds(pair, x):
        if bn.training and not pair.warned and torch.is_grad_enabled():
            pair.warned.add(True)  # one warning per turn_on, not one per pair
            warnings.warn(f"tune: {TRAINING_MODE_NOTE}", stacklevel=4)  # the line that called the conv
        return type(conv).forward(conv, *args)
    device_type = x.device.type
    if _recomputes(pair, x):
        return conv_bn_recomputed(conv, bn, args, device_type)
    geometry = pair.geometry
    if geometry is None:
        geometry, x = conv_geometry(conv, x, output_size)
    tensors = (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, _eps_tensor(pair), geometry)
    if not autocast_enabled(device_type):
        return FoldedConv.apply(x, *tensors, conv.weight.dtype)
    dtype = autocast_dtype(device_type)  # the fold itself runs in float32, then is cast (fold.py)
    with torch.autocast(device_type, enabled=False):
        return FoldedConv.apply(x.to(dtype), *tensors, dtype)


def _tuned_bn_forward(pair: _Pair, x: Tensor) -> Tensor:
    bn = pair.bn
    if not _folds(pair, x):
        return type(bn).forward(bn, x)
    return bn.act(bn.drop(x)) if pair.activation else x


def _is_tuned(module: nn.Module) -> bool:
    forward = module.__dict__.get("forward")
    return isinstance(forward, partial) and forward.func in (_tuned_conv_forward, _tuned_bn_forward)


def _check_model(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"tune expects a torch.nn.Module, got {type(model).__name__}")


def _fold_permanently(model: nn.Module, conv_name: str, bn_name: str) -> None:
    """Deploy: give the conv new parameters W', b' and replace the BN by what follows its normalisation."""
    conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
    with torch.no_grad():
        weight, bias = folded_weight_and_bias(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                                              bn.running_var, bn_eps(bn), weight_layout(conv), conv.weight.dtype)
    conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    parent_name, _, child = bn_name.rpartition(".")
    replacement = nn.Sequential(bn.drop, bn.act) if has_activation(bn) else nn.Identity()
    setattr(model.get_submodule(parent_name), child, replacement)


def turn_on(model: nn.Module, mode: str = "tune") -> Report:
    """Convert every foldable Conv -> BN pair of `model` in place and report what was converted and what was not.

    mode='tune': whenever a pair's BN uses running statistics (eval mode, tune.freeze_bn_stats, or a frozen BN),
    the pair computes Eval mode's forward and backward while autograd keeps what Deploy mode keeps; in training
    mode it runs as before (the report lists such BN layers, and the first training step with them warns).
    mode='deploy': fold the running statistics into the convs once and for all (inference, export); the BN modules
    are replaced, so state_dict changes and turn_off cannot undo it. Calling turn_on again is harmless.
    """
    _check_model(model)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: tune.turn_on accepts mode={' or '.join(map(repr, MODES))}")
    if mode == "deploy":
        turn_off(model)
    report = find_pairs(model)
    report.mode = mode
    warned: set = set()
    for conv_name, bn_name in report.pairs:
        if mode == "deploy":
            _fold_permanently(model, conv_name, bn_name)
            continue
        pair = _pair(model.get_submodule(conv_name), model.get_submodule(bn_name), warned)
        pair.conv.forward = partial(_tuned_conv_forward, pair)
        pair.bn.forward = partial(_tuned_bn_forward, pair)
        if pair.bn.training and not pair.frozen:
            report.in_training_mode.append(bn_name)
    return report


def turn_off(model: nn.Module) -> list[str]:
    """Undo turn_on(mode='tune'): every module runs its class's own forward again. Returns the restored names."""
    _check_model(model)
    restored = []
    for name, module in model.named_modules():
        if _is_tuned(module):
            del module.forward
            restored.append(name)
    return restored
