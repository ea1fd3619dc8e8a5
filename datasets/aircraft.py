"""FGVC-Aircraft (100 variants) through torchvision's loader and download, or from TLlib's image lists.

The fine-tuning protocol trains on trainval (6667 images) and tests on test (3333), so split="train" means trainval.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.datasets import FGVCAircraft

from datasets.download import run_download
from datasets.errors import DatasetNotFoundError
from datasets.finegrained import TLLIB_LAYOUT, check_split, has_tllib_lists, load_tllib_split
from datasets.imagelist import ImageList, NumClassesMixin, read_image

TITLE = "FGVC-Aircraft"
FOLDER = "fgvc-aircraft-2013b"
TORCHVISION_SPLIT = {"train": "trainval", "test": "test"}


class AircraftDataset(NumClassesMixin, FGVCAircraft):
    """torchvision's FGVCAircraft with `.num_classes`."""


def load_aircraft(
    root: str | Path, split: str = "train", transform: Callable[[Any], Any] | None = None, download: bool = False
) -> AircraftDataset | ImageList:
    """Load the trainval ("train") or test split at the variant level."""
    check_split(TITLE, split)
    root = Path(root)
    if has_tllib_lists(root):
        return load_tllib_split(root, split, transform)
    data = root / FOLDER / "data"
    if not data.is_dir() and download:
        run_download(TITLE, "torchvision.datasets.FGVCAircraft", lambda: FGVCAircraft(root, download=True))
    needed = [data / "variants.txt", data / f"images_variant_{TORCHVISION_SPLIT[split]}.txt", data / "images"]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{TITLE} not found under {root}: missing {', '.join(missing)}. Expected {data}/images/*.jpg with the "
            f"variant annotation files (unpack fgvc-aircraft-2013b.tar.gz from "
            f"https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ into {root}, or pass download=True), "
            f"or {TLLIB_LAYOUT.format(root=root)}."
        )
    return AircraftDataset(root, split=TORCHVISION_SPLIT[split], transform=transform, loader=read_image)
