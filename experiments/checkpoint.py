"""What a run writes and reads back: run files, checkpoints, and the rules for resuming one.

Every file the engine writes (checkpoint, config.json, results.json) goes through `write_run_file`: atomically
(experiments/atomic.py), and on a full disk with an error that says how much space was needed. A checkpoint holds
one `Checkpoint`: the training state the engine's `Trainer.state_dict` returns and `load_state_dict` restores.
"""

from __future__ import annotations

import errno
import io
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any, TypedDict

import torch

from experiments import atomic
from experiments.layout import CHECKPOINT as FILENAME
from experiments.memory import MIB
from experiments.utils import ExperimentError


class Checkpoint(TypedDict):
    """What an engine checkpoint holds; a file without these keys is something else."""

    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    step: int
    evaluated_epochs: int
    scores: dict[str, float]
    rng: dict[str, Any]
    meter: dict[str, Any]
    unreadable: dict[int, str]
    config: dict[str, Any]


KEYS = tuple(Checkpoint.__annotations__)
# Configuration entries that may differ when resuming (where and how fast the run goes, not what it computes);
# any other difference means a different experiment.
RESUMABLE_CHANGES = frozenset({"root", "download", "epochs", "log", "workers", "print_freq", "device", "torch",
                               "bad_image_limit"})


class CheckpointError(ExperimentError):
    """A checkpoint is missing, unreadable, not the engine's, or belongs to a different configuration."""


class DiskFullError(ExperimentError):
    """A file could not be written for lack of space; nothing half-written was left behind."""


def write_run_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically; a full disk raises DiskFullError (the previous file is intact)."""
    try:
        atomic.write_atomically(path, data)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        free = shutil.disk_usage(path.parent).free
        raise DiskFullError(
            f"no space left on device writing {path}: needed about {len(data) / MIB:.1f} MiB, free "
            f"{free / MIB:.1f} MiB. Free some space (the previous {path.name}, if any, is intact)"
        ) from error


def save(state: Checkpoint, path: Path) -> None:
    """Serialise `state` with torch.save and write it atomically to `path`."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_run_file(path, buffer.getvalue())


def resolve(path_or_run_dir: str | Path) -> Path:
    """A checkpoint file, or the checkpoint inside a run directory."""
    path = Path(path_or_run_dir)
    return path / FILENAME if path.is_dir() else path


def load(path: Path) -> Checkpoint:
    """Read an engine checkpoint onto the CPU; anything else (missing, corrupt, foreign) is a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: pass a checkpoint file or a run directory holding one")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives (torch >= 1.6)
        raise CheckpointError(f"{path} is not a checkpoint of this project (not a file torch.save wrote): pass the "
                              f"checkpoint.pt of a run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({first_line})") from error
    missing = [key for key in KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of this engine (it lacks {', '.join(missing)}): pass "
                              f"the checkpoint.pt of a run directory, or load weights with --pretrained instead")
    return state


def check_resumable(saved: dict, now: dict, source: Path) -> None:
    """Refuse to continue the run whose configuration is `saved` under the configuration `now` if they differ
    in anything but RESUMABLE_CHANGES."""
    differences = [f"{key}: {saved.get(key)!r} -> {now.get(key)!r}" for key in sorted(saved.keys() | now.keys())
                   if key not in RESUMABLE_CHANGES and saved.get(key) != now.get(key)]
    if differences:
        raise CheckpointError(f"{source} is from a different experiment: " + "; ".join(differences))
