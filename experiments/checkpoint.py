"""Checkpoints of a run: written atomically, so an interrupted save never replaces the last good one."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from experiments.utils import ExperimentError

FILENAME = "checkpoint.pt"


class CheckpointError(ExperimentError):
    """A checkpoint is missing, unreadable or belongs to a different configuration."""


def save(state: dict, path: Path) -> None:
    """Write `state` next to `path` first and rename it into place (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def resolve(path_or_run_dir: str | Path) -> Path:
    """A checkpoint file, or the checkpoint inside a run directory."""
    path = Path(path_or_run_dir)
    return path / FILENAME if path.is_dir() else path


def load(path: Path) -> dict:
    """Read a checkpoint onto the CPU; a missing or corrupt file becomes a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: pass a checkpoint file or a run directory holding one")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({error})") from error
