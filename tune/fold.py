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

which is exactly what Eval mode computes, without the feature-map-sized BN pass. `FoldedConv` saves only the
conv input and tensors that already exist (parameters and buffers); W' is recomputed in backward, so autograd keeps
no more than a plain conv with a parameter weight (Deploy mode) would.

For ConvTranspose the weight is (in, out / groups, *kernel): the output channel of W[i, j] is
(i // (in / groups)) * (out / groups) + j, so c is broadcast group by group. Linear is a conv with weight (out, in).
The fold runs in float32 at least (float64 models stay float64) and W', b' are cast to the conv's compute dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ConvGeometry:
    """Everything but the tensors that a convolution (or a linear layer, `linear=True`) needs."""

    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    transposed: bool = False
    output_padding: tuple[int, ...] = ()
    groups: int = 1
    linear: bool = False


def scale_output_channels(weight: Tensor, c: Tensor, geometry: ConvGeometry) -> Tensor:
    """W * c with c (one value per output channel) broadcast over the weight's output-channel axis."""
    if not geometry.transposed:
        return weight * c.reshape(-1, *([1] * (weight.dim() - 1)))
    groups, in_channels = geometry.groups, weight.shape[0]
    factor = c.reshape(groups, 1, -1).expand(groups, in_channels // groups, -1).reshape(in_channels, -1)
    return weight * factor.reshape(*factor.shape, *([1] * (weight.dim() - 2)))


def sum_per_output_channel(t: Tensor, geometry: ConvGeometry) -> Tensor:
    """Sum a weight-shaped tensor over every axis but the output channel: the adjoint of the broadcast above."""
    if not geometry.transposed:
        return t.flatten(1).sum(1)
    grouped = t.unflatten(0, (geometry.groups, -1))
    return grouped.sum(dim=(1, *range(3, grouped.dim()))).reshape(-1)


@dataclass
class BNStatistics:
    """The BN side of a fold: affine parameters (None without affine) and running statistics."""

    gamma: Tensor | None
    beta: Tensor | None
    mean: Tensor
    var: Tensor
    eps: float


def fold_factors(bn: BNStatistics, compute_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """c = gamma / sqrt(var + eps) and 1 / sqrt(var + eps), in compute_dtype."""
    inv_std = torch.rsqrt(bn.var.to(compute_dtype) + bn.eps)
    c = inv_std if bn.gamma is None else bn.gamma.to(compute_dtype) * inv_std
    return c, inv_std


def folded_weight_and_bias(
    weight: Tensor, bias: Tensor | None, bn: BNStatistics, geometry: ConvGeometry, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """W' and b' of the module docstring, computed in float32 or wider, returned in `dtype`."""
    compute_dtype = torch.promote_types(weight.dtype, torch.float32)
    c, _ = fold_factors(bn, compute_dtype)
    shift = -bn.mean.to(compute_dtype) if bias is None else bias.to(compute_dtype) - bn.mean.to(compute_dtype)
    new_bias = c * shift if bn.beta is None else bn.beta.to(compute_dtype) + c * shift
    new_weight = scale_output_channels(weight.to(compute_dtype), c, geometry)
    return new_weight.to(dtype), new_bias.to(dtype)


def _forward_op(x: Tensor, weight: Tensor, bias: Tensor, g: ConvGeometry) -> Tensor:
    if g.linear:
        return F.linear(x, weight, bias)
    return torch.ops.aten.convolution(
        x, weight, bias, g.stride, g.padding, g.dilation, g.transposed, g.output_padding, g.groups
    )


def _backward_op(
    grad: Tensor, x: Tensor, weight: Tensor, g: ConvGeometry, need_input: bool
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Gradients of conv(x, weight, bias) with respect to x (if asked), weight and bias."""
    if g.linear:
        grad_x = grad @ weight if need_input else None
        return grad_x, grad.t() @ x, grad.sum(0)
    out_channels = weight.shape[1] * g.groups if g.transposed else weight.shape[0]
    return torch.ops.aten.convolution_backward(
        grad, x, weight, [out_channels], g.stride, g.padding, g.dilation, g.transposed,
        g.output_padding, g.groups, [need_input, True, True],
    )


class FoldedConv(torch.autograd.Function):
    """BN(conv(x)) with running statistics, computed as one conv with W', b' and differentiated as above."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, mean, var, eps, geometry, dtype):  # noqa: D102
        bn = BNStatistics(gamma, beta, mean, var, eps)
        new_weight, new_bias = folded_weight_and_bias(weight, bias, bn, geometry, dtype)
        ctx.save_for_backward(x, weight, bias, gamma, mean, var)
        ctx.eps, ctx.geometry, ctx.dtype = eps, geometry, dtype
        ctx.beta_dtype = None if beta is None else beta.dtype
        return _forward_op(x, new_weight, new_bias, geometry)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        x, weight, bias, gamma, mean, var = ctx.saved_tensors
        geometry = ctx.geometry
        bn = BNStatistics(gamma, None, mean, var, ctx.eps)
        new_weight, _ = folded_weight_and_bias(weight, bias, bn, geometry, ctx.dtype)
        grad_x, grad_w_folded, grad_b_folded = _backward_op(
            grad, x, new_weight, geometry, ctx.needs_input_grad[0]
        )
        compute_dtype = torch.promote_types(weight.dtype, torch.float32)
        c, inv_std = fold_factors(bn, compute_dtype)
        grad_w_folded = grad_w_folded.to(compute_dtype)
        grad_b_folded = grad_b_folded.to(compute_dtype)
        need = ctx.needs_input_grad
        grad_weight = scale_output_channels(grad_w_folded, c, geometry).to(weight.dtype) if need[1] else None
        grad_bias = (c * grad_b_folded).to(bias.dtype) if need[2] else None
        grad_gamma = None
        if need[3]:
            shift = -mean.to(compute_dtype) if bias is None else bias.to(compute_dtype) - mean.to(compute_dtype)
            dc = sum_per_output_channel(grad_w_folded * weight.to(compute_dtype), geometry) + grad_b_folded * shift
            grad_gamma = (dc * inv_std).to(gamma.dtype)
        grad_beta = grad_b_folded.to(ctx.beta_dtype) if need[4] else None
        return grad_x, grad_weight, grad_bias, grad_gamma, grad_beta, None, None, None, None, None
