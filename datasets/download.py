"""Fetching public dataset archives, turning every failure into a DatasetNotFoundError (never a silent exit)."""

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
    """Download and unpack each archive whose folder is missing under `root`, checking that it appeared."""
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
        if not target.exists():
            raise DatasetNotFoundError(
                f"{title}: {archive.filename} from {archive.url} was unpacked into {root} "
                f"but did not create the expected {target}"
            )
