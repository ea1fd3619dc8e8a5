"""CUB-200-2011 (200 bird species), read from the original archive's text files or TLlib's image lists."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets.download import Archive, fetch_archives
from datasets.errors import DatasetNotFoundError
from datasets.finegrained import TLLIB_LAYOUT, check_split, has_tllib_lists, load_tllib_split
from datasets.imagelist import ImageList, class_names, require_all_classes

TITLE = "CUB-200-2011"
FOLDER = "CUB_200_2011"
TABLES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
ARCHIVE = Archive(FOLDER, "CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                  md5="97eceeb196236b17998738112f37df78")


def load_cub200(
    root: str | Path, split: str = "train", transform: Callable[[Any], Any] | None = None, download: bool = False
) -> ImageList:
    """Load the official train or test split (5994 / 5794 images)."""
    check_split(TITLE, split)
    root = Path(root)
    if has_tllib_lists(root):
        return load_tllib_split(root, split, transform)
    base = root / FOLDER
    if not base.is_dir() and download:
        fetch_archives(root, [ARCHIVE], TITLE)
    missing = [str(path) for path in [*(base / t for t in TABLES), base / "images"] if not path.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{TITLE} not found under {root}: missing {', '.join(missing)}. Expected {base}/{{{', '.join(TABLES)}}} "
            f"and {base}/images/<class>/*.jpg (unpack {ARCHIVE.filename} from "
            f"https://www.vision.caltech.edu/datasets/cub_200_2011/ there, or pass download=True), "
            f"or {TLLIB_LAYOUT.format(root=root)}."
        )
    images = _read_table(base / "images.txt")
    labels = _read_table(base / "image_class_labels.txt")
    is_train = _read_table(base / "train_test_split.txt")
    unlabelled = sorted(images.keys() - labels.keys() | images.keys() - is_train.keys())
    if unlabelled:
        raise ValueError(f"{base}: images without a label or split entry: ids {', '.join(unlabelled[:10])}")
    everything = [(base / "images" / images[key], int(labels[key]) - 1) for key in images]
    classes = class_names(everything)
    want = "1" if split == "train" else "0"
    samples = [sample for key, sample in zip(images, everything, strict=True) if is_train[key] == want]
    require_all_classes(samples, classes, base / "images")
    return ImageList(samples, classes, transform)


def _read_table(path: Path) -> dict[str, str]:
    """Read CUB's `<image id> <value>` files."""
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected '<image id> <value>', got {line!r}")
            table[parts[0]] = parts[1].strip()
    return table
