"""The few torch functions whose names changed across the versions tune supports (torch >= 2.0)."""

from __future__ import annotations

import torch

if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
    autocast_enabled = torch.is_autocast_enabled
    autocast_dtype = torch.get_autocast_dtype
else:

    def autocast_enabled(device_type: str) -> bool:
        """Whether autocast is on for `device_type`."""
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()

    def autocast_dtype(device_type: str) -> torch.dtype:
        """The dtype autocast casts to on `device_type`."""
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


if hasattr(torch, "compiler") and hasattr(torch.compiler, "is_compiling"):  # torch >= 2.3
    is_compiling = torch.compiler.is_compiling
else:
    from torch._dynamo import is_compiling  # noqa: F401 - re-exported
