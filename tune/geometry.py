"""Where a convolution's output channels are and how it is called: what folding needs besides the tensors.

A `ConvGeometry` holds the explicit arguments of one `torch.convolution` call (or marks a linear layer). Most convs
have one geometry for every input (`static_geometry`); 'same' padding with an even kernel, non-zero padding modes,
ConvTranspose's output_size and convs that pad to TensorFlow's 'same' in their own forward (timm's Conv2dSame)
depend on the input and are worked out per call (`conv_geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import has_stock_forward, tensorflow_same_totals


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
    if isinstance(conv, nn.Linear):
        return ConvGeometry(linear=True)
    if not has_stock_forward(conv) or conv.transposed or conv.padding_mode != "zeros" or conv.padding == "same":
        return None
    return conv_geometry(conv, None, None)[0]  # these branches never read the input


def _split_padding(x: Tensor | None, totals: list[int]) -> tuple[tuple[int, ...], Tensor | None]:
    """Symmetric conv padding for `totals`, padding the input first by the odd element on the right, as torch and
    TensorFlow both place it."""
    extra = [total % 2 for total in totals]
    if any(extra):
        x = F.pad(x, [p for e in reversed(extra) for p in (0, e)])
    return tuple(total // 2 for total in totals), x


def conv_geometry(
    conv: nn.Module, x: Tensor | None, output_size: list[int] | None
) -> tuple[ConvGeometry, Tensor | None]:
    """The explicit geometry of one call of `conv`, and its input after any padding the conv applies itself.

    String padding ('same', 'valid') and non-zero padding modes become explicit integer padding, padding the input
    first where the conv does so ('same' with an even kernel pads one extra element on the right, as torch does).
    A conv with a forward of its own is one that `pads_to_same` accepted: its padding is TensorFlow's 'same'.
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
    if not has_stock_forward(conv):
        padding, x = _split_padding(x, tensorflow_same_totals(conv, tuple(x.shape[2:])))
    elif conv.padding_mode != "zeros":
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = (0,) * spatial
    elif conv.padding == "valid":
        padding = (0,) * spatial
    elif conv.padding == "same":
        padding, x = _split_padding(x, [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)])
    else:
        padding = tuple(conv.padding)
    return ConvGeometry(padding=padding, output_padding=(0,) * spatial, **common), x
