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
from dataclasses import dataclass
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
# How a converted pair computes Tune mode while its BN uses running statistics; the results are Eval mode's either
# way, and autograd keeps what Deploy mode keeps. "fold": one convolution with W', b' (fold.py). "recompute": Eval
# mode's own conv and BN, the conv output recomputed in backward instead of kept (recompute.py). "auto": per call,
# recompute where the output has at most RECOMPUTE_MAX_POSITIONS positions (batch x output pixels), where one more
# conv of so small a feature map costs less than the weight-sized fold, and fold elsewhere. Inside torch.compile
# every pair folds (compiled graphs plan their own memory), and ConvTranspose folds under "auto".
STRATEGIES = ("auto", "fold", "recompute")
# Chosen on the CPU with the benchmark's host-bound preset and single layers (the crossover lay between 16 and 64
# positions there, in float32 and under bfloat16 autocast alike).
RECOMPUTE_MAX_POSITIONS = 64


@dataclass
class _OneWarning:
    """Shared by the pairs of one turn_on, so that training-mode use warns once, not once per pair."""

    issued: bool = False


@dataclass(eq=False)
class _Pair:
    """What a converted pair's two forwards share, worked out once at turn_on."""

    conv: nn.Module
    bn: nn.Module
    strategy: str  # one of STRATEGIES
    batched_ndim: int  # folding needs a batched input (a BN's channel axis is 1)
    frozen: bool  # the BN has no training mode
    activation: bool  # the BN applies dropout and an activation after normalising
    geometry: ConvGeometry | None  # None: depends on the input
    input_positions_per_output: int | None  # the stride product; None for ConvTranspose (more outputs than inputs)
    training_warning: _OneWarning
    eps_value: float = 0.0  # the bn.eps that `eps` holds
    eps: Tensor | None = None  # bn.eps as a 0-dim CPU tensor: adding it costs one op, a Python float several


def _pair(conv: nn.Module, bn: nn.Module, strategy: str, training_warning: _OneWarning) -> _Pair:
    if isinstance(conv, nn.Linear):
        per_output = 1
    else:
        per_output = None if conv.transposed else math.prod(conv.stride)
    return _Pair(conv, bn, strategy, batched_ndim(conv), always_running_stats(bn), has_activation(bn),
                 static_geometry(conv), per_output, training_warning)


def _folds(pair: _Pair, x: Tensor) -> bool:
    """Whether this call computes Tune mode: the one condition the conv's and the BN's forwards both test, so that
    they always agree (the conv computing BN(conv(x)) while the BN passes it on, or each running its own forward)."""
    bn = pair.bn
    return x.dim() == pair.batched_ndim and (pair.frozen or (not bn.training and bn.running_var is not None))


def _recomputes(pair: _Pair, x: Tensor) -> bool:
    """Whether this call recomputes the conv output in backward rather than folding (see STRATEGIES)."""
    if pair.strategy == "fold" or is_compiling():
        return False
    if pair.strategy == "recompute":
        return True
    per_output = pair.input_positions_per_output
    return per_output is not None and x.numel() <= RECOMPUTE_MAX_POSITIONS * per_output * x.shape[1]


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
        if bn.training and not pair.training_warning.issued and torch.is_grad_enabled():
            pair.training_warning.issued = True
            warnings.warn(f"tune: {TRAINING_MODE_NOTE}", stacklevel=4)  # the line that called the conv
        return type(conv).forward(conv, *args)
    device_type = x.device.type
    if _recomputes(pair, x):
        return conv_bn_recomputed(conv, bn, args, device_type)
    geometry = pair.geometry
    if geometry is None:
        geometry, x = conv_geometry(conv, x, output_size)
    # Inside torch.compile eps stays a Python float: a CPU tensor would be a CPU input of the graph, which keeps
    # Inductor from using CUDA graphs.
    eps = bn.eps if is_compiling() else _eps_tensor(pair)
    tensors = (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, eps, geometry)
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


def turn_on(model: nn.Module, mode: str = "tune", strategy: str = "auto") -> Report:
    """Convert every foldable Conv -> BN pair of `model` in place and report what was converted and what was not.

    mode='tune': whenever a pair's BN uses running statistics (eval mode, tune.freeze_bn_stats, or a frozen BN),
    the pair computes Eval mode's forward and backward while autograd keeps what Deploy mode keeps; in training
    mode it runs as before (the report lists such BN layers, and the first training step with them warns).
    mode='deploy': fold the running statistics into the convs once and for all (inference, export); the BN modules
    are replaced, so state_dict changes and turn_off cannot undo it. Calling turn_on again is harmless (with
    mode='tune' it converts afresh, with the `strategy` given: see STRATEGIES).
    """
    _check_model(model)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: tune.turn_on accepts mode={' or '.join(map(repr, MODES))}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: tune.turn_on accepts strategy="
                         f"{', '.join(map(repr, STRATEGIES))}")
    if mode == "deploy":
        turn_off(model)
    report = find_pairs(model)
    report.mode = mode
    training_warning = _OneWarning()
    for conv_name, bn_name in report.pairs:
        if mode == "deploy":
            _fold_permanently(model, conv_name, bn_name)
            continue
        pair = _pair(model.get_submodule(conv_name), model.get_submodule(bn_name), strategy, training_warning)
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
