"""Datasets of the Tune-mode reproduction: domain adaptation (Office-31, Office-Home, VisDA-2017, handwritten digits
shipped inside installed packages, a synthetic Office-31 stand-in) and fine-tuning (CUB-200-2011, FGVC-Aircraft,
Stanford Cars), with TLlib's transforms."""

from datasets import transforms
from datasets.errors import DatasetNotFoundError, ImageReadError
from datasets.registry import NAMES, canonical_name, domains, get_dataset, tasks

__all__ = [
    "NAMES",
    "DatasetNotFoundError",
    "ImageReadError",
    "canonical_name",
    "domains",
    "get_dataset",
    "tasks",
    "transforms",
]
