"""A list of (image path, label) pairs as a Dataset, plus the two ways of building one: list files and folders."""

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

from datasets.errors import DatasetNotFoundError, ImageReadError

Sample = tuple[Path, int]


def read_image(path: str | Path) -> Image.Image:
    """Load an RGB image like torchvision's default loader, but name the file when it is missing or corrupt (in
    the message, and as the error's `path`)."""
    try:
        return default_loader(str(path))
    except (OSError, ValueError, SyntaxError) as err:
        error = ImageReadError(f"cannot read image {path}: {type(err).__name__}: {err}")
        error.path = str(path)
        raise error from err


class NumClassesMixin:
    """Adds `.num_classes` to any dataset that has a `.classes` list (ours and torchvision's)."""

    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class ImageList(NumClassesMixin, Dataset):
    """Images with integer labels; exposes `.classes`, `.num_classes`, `.samples` and `.targets`."""

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        loader: Callable[[str | Path], Any] = read_image,
    ) -> None:
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.classes = list(classes)
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = self.loader(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def read_list(list_file: Path, root: Path) -> list[Sample]:
    """Parse a TLlib-style list file (`relative/path label` per line) into samples with paths under `root`."""
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{list_file}:{number}: expected 'relative/path label', got {line!r}")
        samples.append((root / parts[0], int(parts[1])))
    if not samples:
        raise ValueError(f"{list_file} is empty: expected one 'relative/path label' line per image (restore the file, "
                         f"or download the dataset again)")
    return samples


def class_names(samples: Iterable[Sample]) -> list[str]:
    """Name label k after the folder its images sit in (as in ImageFolder layouts); fall back to 'k'."""
    folders: dict[int, set[str]] = defaultdict(set)
    for path, label in samples:
        folders[label].add(path.parent.name)
    count = max(folders, default=-1) + 1
    names = [next(iter(folders[k])) if len(folders[k]) == 1 else str(k) for k in range(count)]
    return names if len(set(names)) == count else [str(k) for k in range(count)]


def scan_class_folders(image_dir: Path, classes: Sequence[str]) -> list[Sample]:
    """Collect `image_dir/<class>/*` images, labelled by position in `classes`; error naming absent classes."""
    absent = [name for name in classes if not (image_dir / name).is_dir()]
    if absent:
        raise missing_classes_error(image_dir, absent, len(classes))
    found = make_dataset(str(image_dir), {name: i for i, name in enumerate(classes)}, IMG_EXTENSIONS, allow_empty=True)
    samples = [(Path(path), label) for path, label in found]
    require_all_classes(samples, classes, image_dir)
    return samples


def require_all_classes(samples: Sequence[Sample], classes: Sequence[str], where: Path) -> None:
    """Raise if a class has no images or one of the class folders the samples point into is absent."""
    labels = {label for _, label in samples}
    folders = {(path.parent, label) for path, label in samples}
    missing_dirs = {label for folder, label in folders if not folder.is_dir()}
    missing = [name for i, name in enumerate(classes) if i not in labels or i in missing_dirs]
    if missing:
        raise missing_classes_error(where, missing, len(classes))


def missing_classes_error(where: Path, missing: Sequence[str], expected: int) -> DatasetNotFoundError:
    """Build the error for a domain/split folder that lacks some of its classes (e.g. a half-unpacked archive)."""
    return DatasetNotFoundError(
        f"{where} is incomplete: {len(missing)} of {expected} classes have no image folder or no images: "
        f"{', '.join(missing)}. Re-download or re-extract the dataset."
    )
