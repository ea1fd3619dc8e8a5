"""The other way to keep only the conv input: Eval mode's own conv and BN, with BN's saved input recomputed.

Where a feature map has few positions (say a batch of one at 7x7 px) while the conv weight is large, the weight-sized
fold costs more than BN itself. There Tune mode runs the conv and `F.batch_norm` exactly as Eval mode does (the same
kernels, so the same results bit for bit) but does not let autograd keep the conv output that BN's backward needs:
a saved-tensor hook stores a recipe instead, and backward recomputes that output from the conv input, which the conv
keeps anyway. The extra cost is one conv of that small feature map; autograd keeps what Deploy mode keeps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .compat import autocast_dtype, autocast_enabled
from .layers import bn_eps


class _Recipe:
    """Stands in for the conv output among BN's saved tensors, and recomputes it when backward asks."""

    __slots__ = ("output", "conv", "args", "autocast", "version")

    def __init__(self, output: Tensor, conv: nn.Module, args: tuple, autocast: tuple[str, torch.dtype] | None):
        self.output, self.conv, self.args, self.autocast = output, conv, args, autocast
        self.version = args[0]._version  # the input must still be what the conv saw when backward recomputes

    def pack(self, tensor: Tensor) -> object:
        if tensor is self.output:
            self.output = None  # the recipe must not keep the very tensor it replaces
            return self
        return tensor

    def unpack(self, saved: object) -> object:
        if saved is not self:
            return saved
        conv, args = self.conv, self.args
        if args[0]._version != self.version:
            raise RuntimeError(f"tune: the input of {type(conv).__name__} was modified in place after the conv read "
                               "it, so its output cannot be recomputed for backward; make that operation out of "
                               "place, or use tune.turn_on(model, strategy='fold')")
        if self.autocast is None:
            return type(conv).forward(conv, *args)
        device_type, dtype = self.autocast
        with torch.autocast(device_type, dtype=dtype):
            return type(conv).forward(conv, *args)


def conv_bn_recomputed(conv: nn.Module, bn: nn.Module, args: tuple, device_type: str) -> Tensor:
    """BN(conv(*args)) with BN on running statistics, as Eval mode computes it, keeping no conv output."""
    output = type(conv).forward(conv, *args)
    if not torch.is_grad_enabled():
        return F.batch_norm(output, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn_eps(bn))
    autocast = (device_type, autocast_dtype(device_type)) if autocast_enabled(device_type) else None
    recipe = _Recipe(output, conv, args, autocast)
    with torch.autograd.graph.saved_tensors_hooks(recipe.pack, recipe.unpack):
        return F.batch_norm(output, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn_eps(bn))
