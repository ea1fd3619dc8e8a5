"""Data of a run: endless, resumable training streams and a sharded evaluation loader.

A training stream is a pure function of (seed, position): each pass over the dataset is a permutation seeded by
the pass number, and each sample's random augmentation is seeded by its position in the stream. A run resumed at
any iteration therefore sees exactly the batches an uninterrupted run would, whatever the number of workers.
"""

from __future__ import annotations

import argparse
import random
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

import datasets
from datasets.transforms import test_transform, train_transform


def _derive_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class SeededSamples(Dataset):
    """Item (index, seed) is dataset[index] drawn with torch's and Python's RNGs seeded by `seed`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)


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


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C is the main process's to handle (it saves a checkpoint); workers must not die of it first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class TaskData:
    """What a run trains and evaluates on. `target` is None unless the method adapts to unlabeled target data."""

    source: DataLoader  # endless
    target: DataLoader | None  # endless
    test: DataLoader
    num_classes: int
    task: str  # "A->W", or the dataset name when fine-tuning on its train split
    per_class: bool  # also report mean per-class accuracy (VisDA-2017's metric)


def build(args: argparse.Namespace, adapts: bool, start_step: int, rank: int, world_size: int) -> TaskData:
    """Datasets, transforms and loaders for `args`, with the training streams starting at iteration `start_step`."""
    train_tf = train_transform(
        resize=None if args.no_train_resize else args.resize_size,
        crop=args.crop_size,
        center_crop=args.center_crop,
        scale=tuple(args.scale),
    )
    test_tf = test_transform(resize=args.resize_size, crop=args.crop_size)

    def load(domain: str | None, split: str, transform) -> Dataset:
        return datasets.get_dataset(args.data, args.root, domain, split, transform, args.download)

    if datasets.domains(args.data):  # domain adaptation: the target domain, unlabeled, is also the test set
        source = load(args.source, "train", train_tf)
        target = load(args.target, "train", train_tf) if adapts else None
        test, task = load(args.target, "test", test_tf), f"{args.source}->{args.target}"
    else:
        source, target = load(None, "train", train_tf), None
        test, task = load(None, "test", test_tf), args.data

    def stream(dataset: Dataset, stream_id: int) -> DataLoader:
        sampler = StreamSampler(
            len(dataset), (args.seed, stream_id), start_step * args.batch_size * world_size, rank, world_size
        )
        return _loader(args, SeededSamples(dataset), sampler, drop_last=True)

    return TaskData(
        source=stream(source, 0),
        target=stream(target, 1) if target is not None else None,
        test=_loader(args, Subset(test, range(rank, len(test), world_size))),
        num_classes=source.num_classes,
        task=task,
        per_class=args.per_class_eval or args.data == "visda2017",
    )


def _loader(
    args: argparse.Namespace, dataset: Dataset, sampler: Sampler | None = None, drop_last: bool = False
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=args.device.startswith("cuda"),
        drop_last=drop_last,
        worker_init_fn=_ignore_sigint,
        generator=torch.Generator().manual_seed(args.seed),  # leave the global RNG alone: resumes stay exact
        persistent_workers=args.workers > 0,
    )
