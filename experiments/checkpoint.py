"""What a run writes and reads back: atomic files, checkpoints, and the rules for resuming one.

Every file the engine writes (checkpoint, config.json, results.json) goes through `write_atomically`: the bytes go
to a temporary file of a unique name in the same folder, are flushed to disk and renamed into place, so a crash, a
signal or a full disk leaves either the previous file or the new one, never half of one. On a full disk the
temporary file is removed and the error says how much space was needed.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch

from experiments.memory import MIB
from experiments.utils import ExperimentError

FILENAME = "checkpoint.pt"
TEMPORARY_SUFFIX = ".tmp"
# What an engine checkpoint holds; a file without these keys is something else.
KEYS = ("model", "optimizer", "scheduler", "step", "evaluated_epochs", "scores", "rng", "meter", "unreadable",
        "config")
# Configuration entries that may differ when resuming (where and how fast the run goes, not what it computes);
# any other difference means a different experiment.
RESUMABLE_CHANGES = frozenset({"root", "download", "epochs", "log", "workers", "print_freq", "device", "torch",
                               "bad_image_limit"})


class CheckpointError(ExperimentError):
    """A checkpoint is missing, unreadable, not the engine's, or belongs to a different configuration."""


class DiskFullError(ExperimentError):
    """A file could not be written for lack of space; nothing half-written was left behind."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a unique temporary file in the same folder and an atomic rename.

    The temporary file is removed on any failure (signals included); a full disk raises DiskFullError.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            raise DiskFullError(
                f"no space left on device writing {path}: needed about {len(data) / MIB:.1f} MiB, free "
                f"{free / MIB:.1f} MiB. Free some space (the previous {path.name}, if any, is intact)"
            ) from error
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete what writes killed outright (SIGKILL, power loss) left behind; only safe while owning `folder`."""
    stale = [path for path in folder.glob(f".*{TEMPORARY_SUFFIX}") if path.is_file()]
    for path in stale:
        path.unlink()
    return stale


def save(state: dict, path: Path) -> None:
    """Serialise `state` with torch.save and write it atomically to `path`."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())


def resolve(path_or_run_dir: str | Path) -> Path:
    """A checkpoint file, or the checkpoint inside a run directory."""
    path = Path(path_or_run_dir)
    return path / FILENAME if path.is_dir() else path


def load(path: Path) -> dict:
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
