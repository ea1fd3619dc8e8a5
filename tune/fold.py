"""The Tune-mode math: fold BatchNorm's running statistics into the preceding conv, on every call.

Conv (weight W, bias b) followed by BN in eval mode (gamma, beta, running mean mu and var, eps) is one conv:

    c  = gamma / sqrt(var + eps)                 one factor per output channel
    W' = W * c                                   c broadcast over W's output-channel axis
    b' = beta + c * (b - mu)                     b = 0 without conv bias; gamma = 1, beta = 0 without BN affine
    BN(conv(X, W, b)) = conv(X, W', b')

With dW' and db' the ordinary gradients of conv(X, W', b') (db' = dL/dZ summed over batch and space), the chain
rule through W' and b' gives

    dL/dX     = input gradient of conv(X, W', b')
    dL/dW     = c * dW'
    dL/db     = c * db'
    dL/dgamma = (sum over W's non-output axes of dW' * W  +  db' * (b - mu)) / sqrt(var + eps)
    dL/dbeta  = db'

which is exactly what Eval mode computes, without the feature-map-sized BN pass. `FoldedConv` is one autograd node
per pair (each node costs the autograd engine more than a small op, which is what a step pays on the host): it
saves the conv input and tensors that exist anyway (parameters, buffers); c and W' are recomputed in backward, so
autograd keeps exactly what a plain conv with a parameter weight (Deploy mode) keeps.

For ConvTranspose the weight is (in, out / groups, *kernel): the output channel of W[i, j] is
(i // (in / groups)) * (out / groups) + j, so c is expanded group by group. Linear is a conv with weight (out, in).
The fold runs in float32 at least (float64 models stay float64); W' and b' are then cast to the conv's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .geometry import ConvGeometry

_WIDE = (torch.float32, torch.float64)


def _wide(t: Tensor) -> Tensor:
    """t in float32 at least: the fold is computed at that precision whatever the model's dtype."""
    return t if t.dtype in _WIDE else t.float()


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def inverse_std(var: Tensor, eps: Tensor | float) -> Tensor:
    """1 / sqrt(var + eps) in float32 at least. A 0-dim float32 tensor `eps` costs one op where a Python float,
    which torch wraps and converts, costs several."""
    return (_wide(var) + eps).rsqrt_()


def folded_bias(beta: Tensor | None, c: Tensor, bias: Tensor | None, mean: Tensor) -> Tensor:
    """b' = beta + c * (b - mu), in float32 at least; b = 0 without conv bias, beta = 0 without BN affine."""
    return _plus_shift(None if beta is None else _wide(beta), c, bias, mean)


def gamma_gradient(weight_part: Tensor, grad_b_folded: Tensor, bias: Tensor | None, mean: Tensor,
                   inv_std: Tensor) -> Tensor:
    """dL/dgamma = (weight_part + db' * (b - mu)) / sqrt(var + eps), weight_part = sum of dW' * W per channel."""
    return _plus_shift(weight_part, grad_b_folded, bias, mean).mul_(inv_std)


def _plus_shift(base: Tensor | None, scale: Tensor, bias: Tensor | None, mean: Tensor) -> Tensor:
    """base + scale * (b - mu) in one op in the common case; base None counts as zero, b None as zero."""
    if bias is not None:
        shift = _wide(bias) - _wide(mean)
        return scale * shift if base is None else torch.addcmul(base, scale, shift)
    if base is None:
        return -(scale * _wide(mean))
    return torch.addcmul(base, scale, _wide(mean), value=-1)


def output_channel_factor(c: Tensor, weight: Tensor, geometry: ConvGeometry) -> Tensor:
    """c shaped to broadcast over `weight`'s output-channel axis (expanded group by group for ConvTranspose)."""
    trailing = [1] * (weight.dim() - 2)
    if not geometry.transposed:
        return c.view(-1, 1, *trailing)
    groups, in_channels = geometry.groups, weight.shape[0]
    if groups == 1:
        return c.view(1, -1, *trailing)
    per_input = c.view(groups, 1, -1).expand(groups, in_channels // groups, -1).reshape(in_channels, -1)
    return per_input.view(*per_input.shape, *trailing)


def sum_over_input_axes(product: Tensor, geometry: ConvGeometry) -> Tensor:
    """A weight-shaped tensor summed over every axis but the output channel."""
    if not geometry.transposed:
        return product.flatten(1).sum(1)
    grouped = product.unflatten(0, (geometry.groups, -1))
    return grouped.sum(dim=(1, *range(3, grouped.dim()))).reshape(-1)


def weight_gradients(
    grad_folded: Tensor, weight: Tensor, factor: Tensor, geometry: ConvGeometry, scratch: Tensor | None,
    need_weight: bool,
) -> tuple[Tensor | None, Tensor]:
    """dL/dW = c * dW' (when `need_weight`) and the weight part of dL/dgamma, sum of dW' * W per output channel,
    in float32 at least, allocating at most one weight-sized tensor: a float32 dW' (the conv's own, fresh) is
    multiplied by W into `scratch` (the recomputed W', free by now); a lower-precision dW' is widened into the
    buffer that becomes dL/dW, which holds the product first and is then refilled. On the CPU a fresh weight-sized
    buffer costs about twice a pass over a warm one."""
    wide_weight = _wide(weight)
    if grad_folded.dtype in _WIDE:
        if scratch is None or scratch.dtype != grad_folded.dtype:
            scratch = torch.empty_like(grad_folded)
        weight_part = sum_over_input_axes(torch.mul(grad_folded, wide_weight, out=scratch), geometry)
        return (grad_folded.mul_(factor) if need_weight else None), weight_part
    wide_grad = grad_folded.float()
    weight_part = sum_over_input_axes(wide_grad.mul_(wide_weight), geometry)
    return (wide_grad.copy_(grad_folded).mul_(factor) if need_weight else None), weight_part


def _forward_op(x: Tensor, weight: Tensor, bias: Tensor, g: ConvGeometry) -> Tensor:
    if g.linear:
        return F.linear(x, weight, bias)
    return torch.convolution(x, weight, bias, g.stride, g.padding, g.dilation, g.transposed, g.output_padding,
                             g.groups)


def _backward_op(
    grad: Tensor, x: Tensor, weight: Tensor, g: ConvGeometry, need_x: bool, need_weight: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of conv(x, weight) with respect to x and weight, each where asked for."""
    if g.linear:
        return (grad @ weight if need_x else None), (grad.t() @ x if need_weight else None)
    out_channels = weight.shape[1] * g.groups if g.transposed else weight.shape[0]
    grad_x, grad_weight, _ = torch.ops.aten.convolution_backward.default(
        grad, x, weight, [out_channels], g.stride, g.padding, g.dilation, g.transposed, g.output_padding, g.groups,
        [need_x, need_weight, False],
    )
    return grad_x, grad_weight


def sum_per_output_channel(grad: Tensor) -> Tensor:
    """db' = dL/dZ summed over batch and space, accumulated and returned in float32 at least: a float16 sum over a
    feature map can overflow (where BN's own backward returns dbeta in float32), and torch's pairwise sum is more
    accurate than a convolution's bias gradient."""
    dims = [0, *range(2, grad.dim())]
    return grad.sum(dims, dtype=grad.dtype if grad.dtype in _WIDE else torch.float32)


def fold_factors(gamma: Tensor | None, var: Tensor, eps: Tensor | float) -> tuple[Tensor, Tensor]:
    """c = gamma / sqrt(var + eps) and 1 / sqrt(var + eps), in float32 at least."""
    inv_std = inverse_std(var, eps)
    return (inv_std if gamma is None else _wide(gamma) * inv_std), inv_std


def folded_weight_and_bias(
    weight: Tensor, bias: Tensor | None, gamma: Tensor | None, beta: Tensor | None, mean: Tensor, var: Tensor,
    eps: Tensor | float, geometry: ConvGeometry, dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """W' and b', computed in float32 or wider and returned in `dtype` (Tune's forward and Deploy's fold)."""
    c, _ = fold_factors(gamma, var, eps)
    new_bias = _cast(folded_bias(beta, c, bias, mean), dtype)
    return _scaled(weight, output_channel_factor(c, weight, geometry), dtype), new_bias


def _scaled(weight: Tensor, factor: Tensor, dtype: torch.dtype) -> Tensor:
    """weight * factor computed in float32 at least, then cast to `dtype` (autocast's bfloat16 or float16). Two
    plain passes: on the CPU one multiply writing a lower-precision output (mul with out=) was as fast with two
    threads and 1.5x slower with one (ResNet-50's conv weights, 29 ms against 19)."""
    product = weight * factor
    return product if product.dtype == dtype else product.to(dtype)


class FoldedConv(torch.autograd.Function):
    """BN(conv(x)) with running statistics, computed as one conv with W', b' and differentiated as above."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, mean, var, eps, geometry, dtype):  # noqa: D102
        new_weight, new_bias = folded_weight_and_bias(weight, bias, gamma, beta, mean, var, eps, geometry, dtype)
        # W' cast to a lower precision (autocast) is kept, as Deploy's conv keeps autocast's copy of its weight;
        # W' in the weight's own dtype is recomputed in backward, so Tune keeps no more than Deploy either way.
        kept_weight = new_weight if new_weight.dtype != weight.dtype else None
        ctx.save_for_backward(x, weight, bias, gamma, mean, var, kept_weight)
        ctx.eps, ctx.geometry, ctx.dtype = eps, geometry, dtype  # eps: the pair's own constant
        ctx.beta_dtype = None if beta is None else beta.dtype
        return _forward_op(x, new_weight, new_bias, geometry)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        if torch.is_grad_enabled():
            raise RuntimeError("tune: Tune mode does not support double backward (create_graph=True); use Eval mode")
        x, weight, bias, gamma, mean, var, new_weight = ctx.saved_tensors
        geometry = ctx.geometry
        c, inv_std = fold_factors(gamma, var, ctx.eps)
        need_x, need_weight, need_bias, need_gamma, need_beta = ctx.needs_input_grad[:5]
        factor = output_channel_factor(c, weight, geometry)
        recomputed = new_weight is None
        if recomputed:
            new_weight = _scaled(weight, factor, ctx.dtype)
        grad_x, grad_folded = _backward_op(grad, x, new_weight, geometry, need_x, need_weight or need_gamma)
        grad_weight = grad_bias = grad_gamma = grad_beta = None
        if need_gamma:
            scratch = new_weight if recomputed else None
            grad_weight, weight_part = weight_gradients(grad_folded, weight, factor, geometry, scratch, need_weight)
        elif need_weight:
            grad_weight = _wide(grad_folded).mul_(factor)  # a widened copy, or the conv's own fresh gradient
        del new_weight
        if need_bias or need_gamma or need_beta:
            grad_b_folded = sum_per_output_channel(grad)
            if need_gamma:
                grad_gamma = _cast(gamma_gradient(weight_part, grad_b_folded, bias, mean, inv_std), gamma.dtype)
            if need_bias:
                grad_bias = _cast(c * grad_b_folded, bias.dtype)
            if need_beta:
                grad_beta = _cast(grad_b_folded, ctx.beta_dtype)
        if grad_weight is not None:
            grad_weight = _cast(grad_weight, weight.dtype)
        return grad_x, grad_weight, grad_bias, grad_gamma, grad_beta, None, None, None, None, None
