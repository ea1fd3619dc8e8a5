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
    """base + c * (b - mu): b' when `beta` is BN's beta (None: no affine), and dL/dgamma * sqrt(var + eps) when
    `beta` is the weight part of that gradient and c is db'. b = 0 without conv bias; one op in the common case."""
    if bias is not None:
        shift = _wide(bias) - _wide(mean)
        return c * shift if beta is None else torch.addcmul(_wide(beta), c, shift)
    if beta is None:
        return -(c * _wide(mean))
    return torch.addcmul(_wide(beta), c, _wide(mean), value=-1)


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


def dot_per_output_channel(a: Tensor, b: Tensor, geometry: ConvGeometry) -> Tensor:
    """sum(a * b) over every axis but the output channel (one dot product per channel)."""
    if not geometry.transposed:
        return torch.linalg.vecdot(a.flatten(1), b.flatten(1))
    grouped = (a * b).unflatten(0, (geometry.groups, -1))
    return grouped.sum(dim=(1, *range(3, grouped.dim()))).reshape(-1)


def _forward_op(x: Tensor, weight: Tensor, bias: Tensor, g: ConvGeometry) -> Tensor:
    if g.linear:
        return F.linear(x, weight, bias)
    return torch.convolution(x, weight, bias, g.stride, g.padding, g.dilation, g.transposed, g.output_padding,
                             g.groups)


def _backward_op(
    grad: Tensor, x: Tensor, weight: Tensor, g: ConvGeometry, mask: list[bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of conv(x, weight, bias) with respect to x, weight and bias, each where `mask` asks for it."""
    if g.linear:
        return (grad @ weight if mask[0] else None, grad.t() @ x if mask[1] else None,
                grad.sum(0) if mask[2] else None)
    out_channels = weight.shape[1] * g.groups if g.transposed else weight.shape[0]
    return torch.ops.aten.convolution_backward.default(
        grad, x, weight, [out_channels], g.stride, g.padding, g.dilation, g.transposed, g.output_padding, g.groups,
        mask,
    )


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
    new_weight = _wide(weight) * output_channel_factor(c, weight, geometry)
    return _cast(new_weight, dtype), _cast(folded_bias(beta, c, bias, mean), dtype)


class FoldedConv(torch.autograd.Function):
    """BN(conv(x)) with running statistics, computed as one conv with W', b' and differentiated as above."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, mean, var, eps, geometry, dtype):  # noqa: D102
        new_weight, new_bias = folded_weight_and_bias(weight, bias, gamma, beta, mean, var, eps, geometry, dtype)
        ctx.save_for_backward(x, weight, bias, gamma, mean, var)
        ctx.eps, ctx.geometry, ctx.dtype = eps, geometry, dtype  # eps: the pair's own constant
        ctx.beta_dtype = None if beta is None else beta.dtype
        return _forward_op(x, new_weight, new_bias, geometry)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        if torch.is_grad_enabled():
            raise RuntimeError("tune: Tune mode does not support double backward (create_graph=True); use Eval mode")
        x, weight, bias, gamma, mean, var = ctx.saved_tensors
        geometry = ctx.geometry
        c, inv_std = fold_factors(gamma, var, ctx.eps)
        need_x, need_weight, need_bias, need_gamma, need_beta = ctx.needs_input_grad[:5]
        wide_weight = _wide(weight)
        factor = output_channel_factor(c, weight, geometry)
        grad_x, grad_folded, grad_b_folded = _backward_op(
            grad, x, _cast(wide_weight * factor, ctx.dtype), geometry,
            [need_x, need_weight or need_gamma, need_bias or need_gamma or need_beta],
        )
        grad_weight = grad_bias = grad_gamma = grad_beta = None
        wide_grad = None if grad_folded is None else _wide(grad_folded)
        if grad_b_folded is not None:
            grad_b_folded = _wide(grad_b_folded)
            if need_gamma:
                weight_part = dot_per_output_channel(wide_grad, wide_weight, geometry)
                grad_gamma = _cast(folded_bias(weight_part, grad_b_folded, bias, mean).mul_(inv_std), gamma.dtype)
            if need_bias:
                grad_bias = _cast(c * grad_b_folded, bias.dtype)
            if need_beta:
                grad_beta = _cast(grad_b_folded, ctx.beta_dtype)
        if need_weight:
            # dW' is ours alone: scaling it in place saves a weight-sized allocation and pass.
            grad_weight = _cast(wide_grad.mul_(factor), weight.dtype)
        return grad_x, grad_weight, grad_bias, grad_gamma, grad_beta, None, None, None, None, None
