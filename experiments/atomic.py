"""Files written whole or not at all: the bytes go to a temporary file of a unique name in the same folder, are
flushed to disk and renamed into place, so a crash, a signal or a full disk leaves either the previous file or the
new one, never half of one. No torch: the report and the benchmarks can use it too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from experiments.layout import TEMPORARY_SUFFIX


def _process_umask() -> int:
    mask = os.umask(0)  # the only way to read it; read once, at import, before any thread writes files
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a unique temporary file in the same folder and an atomic rename; the
    temporary file is removed on any failure (signals included), which then propagates. The file gets the
    permissions an ordinary write would give it (mkstemp's are the owner's alone)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        try:
            os.fchmod(descriptor, 0o666 & ~_UMASK)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete what writes killed outright (SIGKILL, power loss) left behind; only safe while owning `folder`."""
    stale = [path for path in folder.glob(f".*{TEMPORARY_SUFFIX}") if path.is_file()]
    for path in stale:
        path.unlink()
    return stale
