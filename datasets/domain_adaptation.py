"""Generic loader for the domain-adaptation benchmarks (one class per folder, one folder per domain).

Each benchmark is described by a DomainSpec; `load_domain` reads TLlib's `image_list/<folder>.txt` when it exists
and otherwise discovers `<folder>/[<subdir>/]<class>/*` itself. The split is not part of a domain: as in TLlib,
training and evaluation use the whole domain.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets.download import Archive, fetch_archives
from datasets.errors import DatasetNotFoundError
from datasets.imagelist import ImageList, Sample, read_list, require_all_classes, scan_class_folders


@dataclass(frozen=True)
class DomainSpec:
    """Static description of one domain-adaptation benchmark as distributed."""

    title: str
    classes: tuple[str, ...]
    folders: dict[str, str]  # short domain name -> folder under the root, in canonical order
    aliases: dict[str, str]  # extra lower-case names -> short domain name
    tasks: tuple[tuple[str, str], ...]
    archives: tuple[Archive, ...] = ()
    image_subdir: str = ""  # Office-31 keeps images in <domain>/images/<class>/
    image_pattern: str = "*.jpg"
    homepage: str = ""

    def resolve(self, domain: str | None) -> str:
        """Map a short name, folder name or alias (any case) to the short domain name."""
        names = {short.lower(): short for short in self.folders}
        names.update({folder.lower(): short for short, folder in self.folders.items()})
        names.update(self.aliases)
        if domain is None or domain.lower() not in names:
            raise ValueError(f"{self.title}: unknown domain {domain!r}; choose one of {list(self.folders)}")
        return names[domain.lower()]


def load_domain(
    spec: DomainSpec,
    root: str | Path,
    domain: str | None,
    transform: Callable[[Any], Any] | None = None,
    download: bool = False,
) -> ImageList:
    """Load one whole domain of `spec` from `root`, downloading its archives first if asked and missing."""
    root = Path(root)
    folder = spec.folders[spec.resolve(domain)]
    list_file = root / "image_list" / f"{folder}.txt"
    image_dir = root / folder / spec.image_subdir
    if not image_dir.is_dir() and download:
        fetch_archives(root, [a for a in spec.archives if a.folder in ("image_list", folder)], spec.title)
    if not image_dir.is_dir():
        raise DatasetNotFoundError(_not_found_message(spec, root, list_file, image_dir))
    if list_file.is_file():
        samples = _relabel_by_folder(spec, read_list(list_file, root), list_file)
        require_all_classes(samples, spec.classes, image_dir)
    else:
        samples = scan_class_folders(image_dir, spec.classes)
    return ImageList(samples, spec.classes, transform)


def _relabel_by_folder(spec: DomainSpec, samples: Sequence[Sample], list_file: Path) -> list[Sample]:
    """Label list entries by their class folder, so every domain shares `spec.classes`' (alphabetical) order.

    TLlib's Office-Home lists use a different label order; the folder name is the ground truth either way.
    """
    index = {name: i for i, name in enumerate(spec.classes)}
    relabelled = []
    for path, _ in samples:
        label = index.get(path.parent.name)
        if label is None:
            raise ValueError(f"{list_file}: {path} is not inside a {spec.title} class folder")
        relabelled.append((path, label))
    return relabelled


def _not_found_message(spec: DomainSpec, root: Path, list_file: Path, image_dir: Path) -> str:
    source = f"Download it from {spec.homepage} and unpack it there" if spec.homepage else "Unpack it there"
    fetch = ", or pass download=True" if spec.archives else ""
    return (
        f"{spec.title} not found under {root}: expected {image_dir}/<class>/{spec.image_pattern} "
        f"(and optionally the list {list_file}). {source}{fetch}."
    )
