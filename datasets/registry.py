"""The single entry point: dataset names -> loaders, plus each benchmark's domains and transfer tasks."""

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from datasets.aircraft import load_aircraft
from datasets.cars import load_cars
from datasets.cub200 import load_cub200
from datasets.digits import DIGITS, load_digits_domain
from datasets.domain_adaptation import DomainSpec, load_domain
from datasets.office31 import OFFICE31
from datasets.officehome import OFFICE_HOME
from datasets.visda2017 import VISDA2017

DOMAIN_SETS: dict[str, DomainSpec] = {
    "office31": OFFICE31,
    "officehome": OFFICE_HOME,
    "visda2017": VISDA2017,
    "synthetic": dataclasses.replace(OFFICE31, title="Synthetic Office-31", archives=(), homepage=""),
    "digits": DIGITS,
}
FINE_GRAINED_SETS = {"cub200": load_cub200, "aircraft": load_aircraft, "cars": load_cars}
NAMES = (*DOMAIN_SETS, *FINE_GRAINED_SETS)
_ALIASES = {"visda": "visda2017", "cub": "cub200", "fgvcaircraft": "aircraft", "stanfordcars": "cars"}


def canonical_name(name: str) -> str:
    """Normalise a dataset name: case, '-', '_' and spaces do not matter ("Office-31" -> "office31")."""
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(NAMES)}")
    return key


def get_dataset(
    name: str,
    root: str | Path,
    domain: str | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    download: bool = False,
) -> Dataset:
    """Load a dataset; the result has `.classes`, `.num_classes` and yields `(image, int label)`.

    Domain-adaptation sets (office31, officehome, visda2017, synthetic) need `domain` and ignore `split`: as in
    TLlib, a whole domain is used both for training and for evaluation. `digits` needs a domain (M, U) and, like
    TLlib's digit benchmarks, has a "train" and a "test" split; it is read from installed packages, so `root` and
    `download` play no part. Fine-tuning sets (cub200, aircraft, cars) take no domain and a split of "train" or
    "test". `synthetic` is generated into `root` on first use and never downloaded. Missing files raise
    DatasetNotFoundError saying what is expected where (for `digits`: which package to install).
    """
    key = canonical_name(name)
    if key == "digits":
        return load_digits_domain(domain, split, transform)
    if key == "synthetic":
        from datasets.synthetic import ensure_synthetic  # imported late so `python -m datasets.synthetic` runs clean

        root = ensure_synthetic(root)
    if key in DOMAIN_SETS:
        return load_domain(DOMAIN_SETS[key], root, domain, transform, download)
    if domain is not None:
        raise ValueError(f"{name} is a fine-tuning dataset without domains; got domain={domain!r}")
    return FINE_GRAINED_SETS[key](root, split, transform, download)


def domains(name: str) -> list[str]:
    """Short domain names in canonical order (e.g. ["A", "W", "D"]); [] for fine-tuning sets."""
    key = canonical_name(name)
    return list(DOMAIN_SETS[key].folders) if key in DOMAIN_SETS else []


def tasks(name: str) -> list[tuple[str, str]]:
    """Ordered (source, target) pairs as reported in TLlib's tables; [] for fine-tuning sets."""
    key = canonical_name(name)
    return list(DOMAIN_SETS[key].tasks) if key in DOMAIN_SETS else []
