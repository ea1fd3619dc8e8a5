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

which is exactly what Eval mode computes, without the feature-map-sized BN pass. `FoldedConv` saves only the conv
input and tensors that already exist (parameters and buffers); c and W' are recomputed in backward, so autograd keeps
no more than a plain conv with a parameter weight (Deploy mode) would. Each line above is one or two tensor ops:
eager mode pays few kernel launches and little Python per pair.

For ConvTranspose the weight is (in, out / groups, *kernel): the output channel of W[i, j] is
(i // (in / groups)) * (out / groups) + j, so c is expanded group by group. Linear is a conv with weight (out, in).
The fold runs in float32 at least (float64 models stay float64); W' and b' are then cast to the conv's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .geometry import ConvGeometry


def scale_output_channels(weight: Tensor, c: Tensor, geometry: ConvGeometry, in_place: bool = False) -> Tensor:
    """W * c with c (one value per output channel) broadcast over the weight's output-channel axis."""
    if not geometry.transposed:
        factor = c.view(-1, *([1] * (weight.dim() - 1)))
    else:
        groups, in_channels = geometry.groups, weight.shape[0]
        factor = c.view(groups, 1, -1).expand(groups, in_channels // groups, -1).reshape(in_channels, -1)
        factor = factor.view(*factor.shape, *([1] * (weight.dim() - 2)))
    return weight.mul_(factor) if in_place else weight * factor


def dot_per_output_channel(a: Tensor, b: Tensor, geometry: ConvGeometry) -> Tensor:
    """sum(a * b) over every axis but the output channel (one dot product per channel, no weight-sized temporary)."""
    if not geometry.transposed:
        return torch.linalg.vecdot(a.flatten(1), b.flatten(1))
    grouped = (a * b).unflatten(0, (geometry.groups, -1))
    return grouped.sum(dim=(1, *range(3, grouped.dim()))).reshape(-1)


def _wide(t: Tensor) -> Tensor:
    """t in float32 at least: the fold is computed at that precision whatever the model's dtype."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def fold_factors(gamma: Tensor | None, var: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """c = gamma / sqrt(var + eps) and 1 / sqrt(var + eps)."""
    inv_std = torch.rsqrt(_wide(var) + eps)
    return (inv_std if gamma is None else _wide(gamma) * inv_std), inv_std


def add_shift(base: Tensor | None, scale: Tensor, bias: Tensor | None, mean: Tensor) -> Tensor:
    """base + scale * (b - mu), with b = 0 without conv bias and base = 0 when None (one op in the common cases).

    b' = add_shift(beta, c, b, mu) in forward; dL/dgamma * sqrt(var + eps) = add_shift(sum dW' * W, db', b, mu).
    """
    if bias is not None:
        shift = _wide(bias) - _wide(mean)
        return scale * shift if base is None else torch.addcmul(base, scale, shift)
    if base is None:
        return -(scale * _wide(mean))
    return torch.addcmul(base, scale, _wide(mean), value=-1)


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _forward_op(x: Tensor, weight: Tensor, bias: Tensor, g: ConvGeometry) -> Tensor:
    if g.linear:
        return F.linear(x, weight, bias)
    return torch.convolution(x, weight, bias, g.stride, g.padding, g.dilation, g.transposed, g.output_padding,
                             g.groups)


def _backward_op(
    grad: Tensor, x: Tensor, weight: Tensor, g: ConvGeometry, need_input: bool
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Gradients of conv(x, weight, bias) with respect to x (if asked), weight and bias."""
    if g.linear:
        grad_x = grad @ weight if need_input else None
        return grad_x, grad.t() @ x, grad.sum(0)
    out_channels = weight.shape[1] * g.groups if g.transposed else weight.shape[0]
    return torch.ops.aten.convolution_backward.default(
        grad, x, weight, [out_channels], g.stride, g.padding, g.dilation, g.transposed,
        g.output_padding, g.groups, [need_input, True, True],
    )


def folded_weight_and_bias(
    weight: Tensor, bias: Tensor | None, gamma: Tensor | None, beta: Tensor | None, mean: Tensor, var: Tensor,
    eps: float, geometry: ConvGeometry, dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """W' and b', computed in float32 or wider and returned in `dtype`."""
    c, _ = fold_factors(gamma, var, eps)
    new_weight = scale_output_channels(_wide(weight), c, geometry)
    new_bias = add_shift(None if beta is None else _wide(beta), c, bias, mean)
    return _cast(new_weight, dtype), _cast(new_bias, dtype)


class FoldedConv(torch.autograd.Function):
    """BN(conv(x)) with running statistics, computed as one conv with W', b' and differentiated as above."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, mean, var, eps, geometry, dtype):  # noqa: D102
        new_weight, new_bias = folded_weight_and_bias(weight, bias, gamma, beta, mean, var, eps, geometry, dtype)
        ctx.save_for_backward(x, weight, bias, gamma, mean, var)
        ctx.eps, ctx.geometry, ctx.dtype = eps, geometry, dtype
        ctx.beta_dtype = None if beta is None else beta.dtype
        return _forward_op(x, new_weight, new_bias, geometry)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        x, weight, bias, gamma, mean, var = ctx.saved_tensors
        geometry, need = ctx.geometry, ctx.needs_input_grad
        c, inv_std = fold_factors(gamma, var, ctx.eps)
        wide_weight = _wide(weight)
        new_weight = _cast(scale_output_channels(wide_weight, c, geometry), ctx.dtype)
        grad_x, grad_w_folded, grad_b_folded = _backward_op(grad, x, new_weight, geometry, need[0])
        grad_w_folded, grad_b_folded = _wide(grad_w_folded), _wide(grad_b_folded)
        grad_gamma = None
        if need[3]:
            dc = add_shift(dot_per_output_channel(grad_w_folded, wide_weight, geometry), grad_b_folded, bias, mean)
            grad_gamma = _cast(dc * inv_std, gamma.dtype)
        # dW' is ours alone: scaling it in place saves a weight-sized allocation and pass.
        grad_weight = _cast(scale_output_channels(grad_w_folded, c, geometry, True), weight.dtype) if need[1] else None
        grad_bias = _cast(c * grad_b_folded, bias.dtype) if need[2] else None
        grad_beta = _cast(grad_b_folded, ctx.beta_dtype) if need[4] else None
        return grad_x, grad_weight, grad_bias, grad_gamma, grad_beta, None, None, None, None, None
