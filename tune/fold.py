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

which is exactly what Eval mode computes, without the feature-map-sized BN pass.

Each line is one existing kernel, which keeps eager mode cheap in kernel launches: W' is eval-mode BatchNorm applied
to W viewed along its output channels (with mean 0 and no shift), b' is eval-mode BatchNorm applied to b, and
BatchNorm's eval-mode backward over those same inputs returns c * dW', c * db' and the two halves of dL/dgamma.
`FoldedConv` saves only the
conv input and tensors that already exist (parameters and buffers); W' is recomputed in backward, so autograd keeps
no more than a plain conv with a parameter weight (Deploy mode) would.

For ConvTranspose the weight is (in, out / groups, *kernel): the output channel of W[i, j] is
(i // (in / groups)) * (out / groups) + j, so the groups are moved next to that axis first. Linear is a conv with
weight (out, in).
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


def _along_output_channels(weight: Tensor, geometry: ConvGeometry) -> Tensor:
    """The weight as an (N, C_out, ...) tensor, so that BatchNorm kernels act along its output channels."""
    if not geometry.transposed:
        return weight.unsqueeze(0)
    if geometry.groups == 1:
        return weight
    return weight.unflatten(0, (geometry.groups, -1)).movedim(0, 1).flatten(1, 2)


def _back_to_weight(t: Tensor, geometry: ConvGeometry) -> Tensor:
    """Inverse of _along_output_channels."""
    if not geometry.transposed:
        return t.squeeze(0)
    if geometry.groups == 1:
        return t
    return t.unflatten(1, (geometry.groups, -1)).movedim(1, 0).flatten(0, 1)


@dataclass
class BNStatistics:
    """The BN side of a fold: affine parameters (None without affine) and running statistics."""

    gamma: Tensor | None
    beta: Tensor | None
    mean: Tensor
    var: Tensor
    eps: float


def _compute_dtype(weight: Tensor) -> torch.dtype:
    return torch.promote_types(weight.dtype, torch.float32)


def folded_weight(weight: Tensor, bn: BNStatistics, geometry: ConvGeometry, zeros: Tensor) -> Tensor:
    """W' = W * c, computed by one eval-mode BatchNorm kernel over W (mean 0, no shift), in the compute dtype."""
    compute = _compute_dtype(weight)
    gamma = None if bn.gamma is None else bn.gamma.to(compute)
    folded = torch.batch_norm(_along_output_channels(weight.to(compute), geometry), gamma, None, zeros,
                              bn.var.to(compute), False, 0.0, bn.eps, True)
    return _back_to_weight(folded, geometry)


def folded_weight_and_bias(
    weight: Tensor, bias: Tensor | None, bn: BNStatistics, geometry: ConvGeometry, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """W' and b' of the module docstring, computed in float32 or wider, returned in `dtype`.

    b' = beta + c * (b - mu) is exactly eval-mode BatchNorm applied to b, so both are single BatchNorm kernels.
    """
    compute = _compute_dtype(weight)
    zeros = torch.zeros_like(bn.mean, dtype=compute)
    bias = zeros if bias is None else bias.to(compute)
    gamma, beta = (None if t is None else t.to(compute) for t in (bn.gamma, bn.beta))
    new_bias = torch.batch_norm(bias.unsqueeze(0), gamma, beta, bn.mean.to(compute), bn.var.to(compute), False,
                                0.0, bn.eps, True).squeeze(0)
    return folded_weight(weight, bn, geometry, zeros).to(dtype), new_bias.to(dtype)


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
        geometry, eps, need = ctx.geometry, ctx.eps, ctx.needs_input_grad
        compute = _compute_dtype(weight)
        zeros = torch.zeros_like(mean, dtype=compute)
        bn = BNStatistics(gamma, None, mean, var, eps)
        new_weight = folded_weight(weight, bn, geometry, zeros).to(ctx.dtype)
        grad_x, grad_w_folded, grad_b_folded = _backward_op(grad, x, new_weight, geometry, need[0])
        # Eval-mode BatchNorm backward over W (mean 0) and over b gives c * dW', c * db' and both halves of dgamma.
        gamma_c = None if gamma is None else gamma.to(compute)
        grad_weight, grad_gamma_w, _ = torch.ops.aten.native_batch_norm_backward(
            _along_output_channels(grad_w_folded.to(compute), geometry),
            _along_output_channels(weight.to(compute), geometry),
            gamma_c, zeros, var.to(compute), None, None, False, eps, [need[1], need[3], False])
        grad_bias, grad_gamma_b, _ = torch.ops.aten.native_batch_norm_backward(
            grad_b_folded.to(compute).unsqueeze(0), (zeros if bias is None else bias.to(compute)).unsqueeze(0),
            gamma_c, mean.to(compute), var.to(compute), None, None, False, eps, [need[2], need[3], False])
        return (
            grad_x,
            _back_to_weight(grad_weight, geometry).to(weight.dtype) if need[1] else None,
            grad_bias.squeeze(0).to(bias.dtype) if need[2] else None,
            (grad_gamma_w + grad_gamma_b).to(gamma.dtype) if need[3] else None,
            grad_b_folded.to(ctx.beta_dtype) if need[4] else None,
            None, None, None, None, None,
        )
