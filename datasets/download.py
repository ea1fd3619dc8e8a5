"""Fetching public dataset archives, turning every failure into a DatasetNotFoundError (never a silent exit).

Archives with a published checksum (md5 or sha256) are verified after the download; a mismatch removes what was
fetched and names the file and both hashes.
"""

import hashlib
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.utils import download_and_extract_archive

from datasets.errors import DatasetNotFoundError


@dataclass(frozen=True)
class Archive:
    """One downloadable archive and the folder (relative to the dataset root) it unpacks to."""

    folder: str
    filename: str
    url: str
    md5: str | None = None  # published checksums; None where there is none to check against
    sha256: str | None = None


def checksum_mismatch(path: Path, archive: Archive) -> str | None:
    """How `path` differs from the checksums `archive` records ("md5 expected X, got Y"); None if it matches or
    none are recorded."""
    for algorithm in ("md5", "sha256"):
        expected = getattr(archive, algorithm)
        if expected is None:
            continue
        if not path.is_file():
            return f"{algorithm} expected {expected}, but the file is missing"
        digest = hashlib.new(algorithm)
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(2**20), b""):
                digest.update(block)
        if digest.hexdigest() != expected.lower():
            return f"{algorithm} expected {expected}, got {digest.hexdigest()}"
    return None


def run_download(title: str, source: str, fetch: Callable[[], object]) -> None:
    """Call `fetch`; re-raise any failure as a DatasetNotFoundError naming the dataset and the source."""
    try:
        fetch()
    except Exception as err:
        raise DatasetNotFoundError(
            f"{title}: download from {source} failed ({type(err).__name__}: {err}). Public mirrors move often: "
            f"fetch the files by hand and unpack them as described in the dataset's documentation."
        ) from err


def fetch_archives(root: Path, archives: Iterable[Archive], title: str) -> None:
    """Download and unpack each archive whose folder is missing under `root`, checking its checksums and that
    the folder appeared."""
    root.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        target = root / archive.folder
        if target.exists():
            continue
        run_download(
            title,
            archive.url,
            lambda a=archive: download_and_extract_archive(a.url, download_root=str(root), filename=a.filename),
        )
        mismatch = checksum_mismatch(root / archive.filename, archive)
        if mismatch:
            (root / archive.filename).unlink(missing_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            raise DatasetNotFoundError(
                f"{title}: {root / archive.filename} from {archive.url} is not the published archive ({mismatch}); "
                f"it was removed with what it unpacked. The mirror may have changed or the download was damaged: "
                f"try again, or fetch the file by hand and check it."
            )
        if not target.exists():
            raise DatasetNotFoundError(
                f"{title}: {archive.filename} from {archive.url} was unpacked into {root} "
                f"but did not create the expected {target}"
            )
