"""The detection task of a run: its data as the engine streams it (images and target dicts, resumable, tolerant of
unreadable images) and its metric, COCO mAP from torchmetrics (pycocotools' COCOeval underneath)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from torchmetrics.detection import MeanAveragePrecision
from tqdm import tqdm

from datasets.detection import BadAnnotationError, load_detection
from experiments import data
from experiments.data import UnreadableImages
from experiments.utils import ExperimentError

Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], list[str]]


def collate_stream(items: list[tuple]) -> Batch:
    """Training batches of SeededSamples: lists of images and targets (sizes may differ), the skipped lines."""
    return [image for image, _, _ in items], [target for _, target, _ in items], [s for *_, s in items if s]


def collate_readable(items: list[tuple]) -> Batch:
    """Evaluation batches of ReadableSamples: the readable images and targets, and the skipped lines."""
    readable = [(image, target) for image, target, skipped in items if not skipped]
    return [image for image, _ in readable], [target for _, target in readable], [s for *_, s in items if s]


def build(config: Mapping[str, Any], start_step: int, rank: int, world_size: int) -> data.TaskData:
    """Train stream and test loader of the configured detection dataset (-s: the scenes' domain), the training
    stream starting at iteration `start_step`; the first --test-images of the test split when given."""

    def load(split: str) -> Dataset:
        try:
            return load_detection(config["dataset"], config["root"], config["source"], split)
        except (OSError, ValueError, BadAnnotationError) as error:  # missing files, bad annotations
            raise ExperimentError(str(error)) from error

    train, test = load("train"), load("test")
    if config["test_images"]:
        test = Subset(test, range(min(config["test_images"], len(test))))
    start = start_step * config["batch_size"] * world_size
    sampler = data.StreamSampler(len(train), (config["seed"], 0), start, rank, world_size)
    shard = Subset(test, range(rank, len(test), world_size))
    return data.TaskData(
        source=data.loader(config, data.SeededSamples(train), sampler, drop_last=True, collate_fn=collate_stream),
        target=None,
        test=data.loader(config, data.ReadableSamples(shard), collate_fn=collate_readable),
        num_classes=train.num_classes,
        per_class=False,
        images=len(train) + len(test),
    )


@torch.no_grad()
def evaluate(detector: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device, show_progress: bool,
             unreadable: UnreadableImages, should_stop: Callable[[], bool] | None = None) -> dict[str, float] | None:
    """COCO mAP@[.5:.95] ("map") and mAP@.5 ("map50") of `detector` over the loader's readable images (gathered
    across ranks by torchmetrics); None if `should_stop` says so before the end."""
    detector.eval()
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools").to(device)
    for images, targets, skipped in tqdm(loader, desc="eval", leave=False, disable=None if show_progress else True):
        unreadable.add(skipped)
        if should_stop is not None and should_stop():
            return None
        if not images:
            continue
        predictions = detector([image.to(device) for image in images])
        metric.update(predictions, [{key: target[key].to(device) for key in ("boxes", "labels")}
                                    for target in targets])
    result = metric.compute()
    return {"map": max(result["map"].item(), 0.0), "map50": max(result["map_50"].item(), 0.0)}

