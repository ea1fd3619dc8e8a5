"""Data of a run: endless, resumable training streams and a sharded evaluation loader, tolerant of bad images.

A training stream is a pure function of (seed, position): each pass over the dataset is a permutation seeded by
the pass number, and each sample's random augmentation is seeded by its position in the stream. A run resumed at
any iteration therefore sees exactly the batches an uninterrupted run would, whatever the number of workers.

An image that cannot be read does not end a long run: in training it is replaced by the next readable image of the
dataset (so batches keep their size and the stream stays deterministic), in evaluation it is left out. Every batch
carries what it skipped (lines "path<TAB>message"); the engine logs each file once and stops, with a checkpoint,
only when more than --bad-image-limit of the run's images are unreadable.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, default_collate

import datasets
from datasets.imagelist import read_image
from datasets.transforms import train_transform, val_transform
from experiments.signals import ignore_in_worker
from experiments.textlog import LOG
from experiments.utils import ExperimentError


def _derive_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


TAB = "\t"  # between the path and the message of a skipped image


def _skipped(error: datasets.ImageReadError) -> str:
    return f"{getattr(error, 'path', '')}{TAB}{error}"


class SeededSamples(Dataset):
    """Item (index, seed) is (image, label, skipped): dataset[index] drawn with torch's and Python's RNGs seeded by
    `seed`, or if that image is unreadable the next readable one; `skipped` has a line for each unreadable image
    passed over ('' if none)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, str]:
        index, seed = key
        skipped = []
        for offset in range(len(self.dataset)):
            try:
                image, label = self._draw((index + offset) % len(self.dataset), seed)
            except datasets.ImageReadError as error:
                skipped.append(_skipped(error))
                continue
            return image, label, "\n".join(skipped)
        raise datasets.ImageReadError(f"no image of the dataset is readable, e.g. {skipped[0].partition(TAB)[2]}")

    def _draw(self, index: int, seed: int) -> tuple[torch.Tensor, int]:
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)


class ReadableSamples(Dataset):
    """Item i is (image, label, '') for a readable image, (None, -1, skipped line) for an unreadable one."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str]:
        try:
            image, label = self.dataset[index]
        except datasets.ImageReadError as error:
            return None, -1, _skipped(error)
        return image, label, ""


def collate_readable(items: list[tuple]) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """Batch the readable items of ReadableSamples; the skipped ones' lines come along (images None if none)."""
    readable = [(image, label) for image, label, skipped in items if not skipped]
    images, labels = default_collate(readable) if readable else (None, None)
    return images, labels, [skipped for *_, skipped in items if skipped]


class UnreadableImages:
    """The unreadable images met so far (path -> message), each logged once as a warning; `exceeded` once more
    than `limit` (a fraction) of the `total` images the run reads are unreadable. Images remembered from a
    checkpoint count only while they are still unreadable, so fixing them and resuming just works."""

    def __init__(self, total: int, limit: float, known: dict[str, str] | None = None) -> None:
        self.total, self.limit = total, limit
        self.images = {path: message for path, message in (known or {}).items() if not _readable(path)}

    def add(self, skipped: Iterable[str]) -> None:
        for lines in skipped:
            for line in lines.splitlines():
                path, _, message = line.partition(TAB)
                if (path or message) not in self.images:
                    self.images[path or message] = message
                    LOG.warning(f"skipped an unreadable image ({len(self.images)} so far): {message}")

    @property
    def exceeded(self) -> bool:
        return len(self.images) > self.limit * self.total

    def error(self) -> ExperimentError:
        return ExperimentError(
            f"{len(self.images)} unreadable images among the {self.total} this run reads (so far), more than "
            f"--bad-image-limit {self.limit:g} allows; the first: {min(self.images.values())}. Replace or remove "
            f"them (or raise the limit), then continue with --resume"
        )


def _readable(path: str) -> bool:
    try:
        read_image(path)
    except datasets.ImageReadError:
        return False
    return True


class StreamSampler(Sampler):
    """Endless (index, seed) pairs from stream position `start` on; rank r of w takes every w-th position.

    So w ranks with batch b see, together, the samples one process with batch w*b sees, in the same iteration.
    """

    def __init__(self, size: int, seed: Sequence[int], start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed = size, tuple(seed)
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position, current_pass, order = self.start + self.rank, None, None
        while True:
            pass_index, offset = divmod(position, self.size)
            if pass_index != current_pass:
                generator = torch.Generator().manual_seed(_derive_seed(*self.seed, pass_index))
                current_pass, order = pass_index, torch.randperm(self.size, generator=generator).tolist()
            yield order[offset], _derive_seed(*self.seed, self.size, position)
            position += self.world_size


@dataclass
class TaskData:
    """What a run trains and evaluates on. `target` is None unless the method adapts to unlabeled target data.

    Training streams yield (images, labels, skipped messages), the test loader the same with only readable images.
    """

    source: DataLoader  # endless
    target: DataLoader | None  # endless
    test: DataLoader
    num_classes: int
    per_class: bool  # also report mean per-class accuracy (VisDA-2017's metric)
    images: int  # how many images the run reads (the base of --bad-image-limit)


def build(config: Mapping[str, Any], adapts: bool, start_step: int, rank: int, world_size: int) -> TaskData:
    """Datasets, transforms and loaders of the run configured by `config` (the parsed options), with the training
    streams starting at iteration `start_step`. A dataset that is missing or malformed raises ExperimentError."""
    normalise = {"norm_mean": tuple(config["norm_mean"]), "norm_std": tuple(config["norm_std"])}
    train_tf = train_transform(config["train_resizing"], config["resize_size"], tuple(config["scale"]),
                               tuple(config["ratio"]), not config["no_hflip"], **normalise)
    test_tf = val_transform(config["val_resizing"], config["resize_size"], **normalise)

    def load(domain: str | None, split: str, transform) -> Dataset:
        try:
            return datasets.get_dataset(config["dataset"], config["root"], domain, split, transform,
                                        config["download"])
        except (OSError, ValueError) as error:  # missing (DatasetNotFoundError), malformed, or a foreign folder
            raise ExperimentError(str(error)) from error

    if datasets.domains(config["dataset"]):  # domain adaptation: the target domain, unlabeled, is also the test set
        source = load(config["source"], "train", train_tf)
        target = load(config["target"], "train", train_tf) if adapts else None
        test = load(config["target"], "test", test_tf)
    else:
        source, target, test = load(None, "train", train_tf), None, load(None, "test", test_tf)

    def stream(dataset: Dataset, stream_id: int) -> DataLoader:
        start = start_step * config["batch_size"] * world_size
        sampler = StreamSampler(len(dataset), (config["seed"], stream_id), start, rank, world_size)
        return loader(config, SeededSamples(dataset), sampler, drop_last=True)

    return TaskData(
        source=stream(source, 0),
        target=stream(target, 1) if target is not None else None,
        test=loader(config, ReadableSamples(Subset(test, range(rank, len(test), world_size))),
                     collate_fn=collate_readable),
        num_classes=source.num_classes,
        per_class=config["per_class_eval"] or config["dataset"] == "visda2017",
        images=sum(len(dataset) for dataset in (source, target, test) if dataset is not None),
    )


def loader(config: Mapping[str, Any], dataset: Dataset, sampler: Sampler | None = None, drop_last: bool = False,
           collate_fn=None) -> DataLoader:
    """A DataLoader of the run's batch size and workers whose own random generator is seeded (workers ignore
    signals, so that only the main process handles them)."""
    return DataLoader(
        dataset,
        batch_size=config["batch_size"],
        sampler=sampler,
        num_workers=config["workers"],
        collate_fn=collate_fn,
        pin_memory=config["device"].startswith("cuda"),
        drop_last=drop_last,
        worker_init_fn=ignore_in_worker,
        generator=torch.Generator().manual_seed(config["seed"]),  # leave the global RNG alone: resumes stay exact
    )
