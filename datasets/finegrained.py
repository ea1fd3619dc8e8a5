"""Pieces shared by the fine-grained (fine-tuning) datasets: split names and TLlib's image-list layout.

TLlib distributes CUB-200-2011, FGVC-Aircraft and Stanford Cars as `image_list/{train_100,test}.txt` plus the image
folders those lists point into. Each loader uses that layout when it is present and its native layout otherwise.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets.imagelist import ImageList, class_names, read_list, require_all_classes

SPLITS = ("train", "test")
TLLIB_LISTS = {"train": "image_list/train_100.txt", "test": "image_list/test.txt"}
TLLIB_LAYOUT = "{root}/image_list/{{train_100,test}}.txt with the image folders they list (TLlib's layout)"


def check_split(title: str, split: str) -> None:
    """Fine-grained sets have exactly a train and a test split."""
    if split not in SPLITS:
        raise ValueError(f"{title}: unknown split {split!r}; choose one of {list(SPLITS)}")


def has_tllib_lists(root: Path) -> bool:
    """Whether `root` holds TLlib's train and test lists (then they take precedence over the native layout)."""
    return all((root / name).is_file() for name in TLLIB_LISTS.values())


def load_tllib_split(root: Path, split: str, transform: Callable[[Any], Any] | None) -> ImageList:
    """Load one split from TLlib lists; class names come from the folders of both splits so they always agree."""
    splits = {name: read_list(root / TLLIB_LISTS[name], root) for name in SPLITS}
    classes = class_names(splits["train"] + splits["test"])
    require_all_classes(splits[split], classes, root / TLLIB_LISTS[split])
    return ImageList(splits[split], classes, transform)
