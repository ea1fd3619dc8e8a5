"""Stanford Cars (196 models) through torchvision's loader, or from TLlib's image lists.

torchvision cannot download it (the Stanford host is gone) and reads its .mat annotations with scipy, so
download=True fetches TLlib's mirror, which comes as image lists and needs no scipy.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.datasets import StanfordCars

from datasets.download import Archive, fetch_archives
from datasets.errors import DatasetNotFoundError
from datasets.finegrained import TLLIB_LAYOUT, check_split, has_tllib_lists, load_tllib_split
from datasets.imagelist import ImageList, NumClassesMixin, read_image

TITLE = "Stanford Cars"
TLLIB_ARCHIVES = (
    Archive("image_list", "image_list.zip", "https://cloud.tsinghua.edu.cn/f/fd3c98c6b6734eaf83dd/?dl=1"),
    Archive("train", "train.tgz", "https://cloud.tsinghua.edu.cn/f/0d08c6c7746f45e08e96/?dl=1"),
    Archive("test", "test.tgz", "https://cloud.tsinghua.edu.cn/f/154aa99e32e441d38e71/?dl=1"),
)


class CarsDataset(NumClassesMixin, StanfordCars):
    """torchvision's StanfordCars with `.num_classes`."""


def load_cars(
    root: str | Path, split: str = "train", transform: Callable[[Any], Any] | None = None, download: bool = False
) -> CarsDataset | ImageList:
    """Load the official train (8144 images) or test (8041) split."""
    check_split(TITLE, split)
    root = Path(root)
    base = root / "stanford_cars"
    if not has_tllib_lists(root) and not base.is_dir() and download:
        fetch_archives(root, TLLIB_ARCHIVES, f"{TITLE} (TLlib mirror; torchvision has no working download)")
    if has_tllib_lists(root):
        return load_tllib_split(root, split, transform)
    annotations, images = (
        (base / "devkit" / "cars_train_annos.mat", base / "cars_train")
        if split == "train"
        else (base / "cars_test_annos_withlabels.mat", base / "cars_test")
    )
    missing = [str(path) for path in (base / "devkit" / "cars_meta.mat", annotations, images) if not path.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{TITLE} not found under {root}: missing {', '.join(missing)}. Expected torchvision's layout "
            f"{base}/{{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat, "
            f"cars_train/, cars_test/}} (the original Stanford download is gone; copies circulate on Kaggle), "
            f"or {TLLIB_LAYOUT.format(root=root)}; download=True fetches the latter from TLlib's mirror."
        )
    try:
        import scipy.io  # noqa: F401  (torchvision reads the .mat annotations with it)
    except ImportError as err:
        raise ImportError(
            f"{TITLE}: torchvision's loader reads {annotations.name} with scipy, which is not installed: "
            f"`pip install scipy`, or use TLlib's image-list layout instead."
        ) from err
    return CarsDataset(root, split=split, transform=transform, loader=read_image)
