"""Measure exactly what autograd keeps for backward: the memory Tune mode exists to save."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


class kept_for_backward:  # noqa: N801 - used like a function: `with tune.kept_for_backward(model) as kept:`
    """Count the bytes of distinct storages that autograd saves for backward inside the `with` block.

    Storages of `exclude` (a module's parameters and buffers, or any tensors) are not counted: they exist anyway.
    A storage saved several times counts once; views count their whole storage, since that is what stays alive.
    """

    def __init__(self, exclude: nn.Module | Iterable[Tensor] = ()) -> None:
        tensors = list(exclude.parameters()) + list(exclude.buffers()) if isinstance(exclude, nn.Module) else exclude
        self._excluded = {_storage_key(t) for t in tensors}
        self._seen: set[tuple] = set()
        self.nbytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor: Tensor) -> Tensor:
        key = _storage_key(tensor)
        if key not in self._excluded and key not in self._seen:
            self._seen.add(key)
            self.nbytes += tensor.untyped_storage().nbytes()
        return tensor

    def __enter__(self) -> kept_for_backward:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hooks.__exit__(*exc_info)


def _storage_key(tensor: Tensor) -> tuple:
    storage = tensor.untyped_storage()
    return (tensor.device, storage.data_ptr(), storage.nbytes())
