"""Evaluation on the target (test split): top-1 and mean per-class accuracy over the readable images, summed
across ranks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from experiments.classifier import Classifier
from experiments.data import UnreadableImages
from experiments.utils import is_distributed


@torch.no_grad()
def evaluate(classifier: Classifier, loader: DataLoader, num_classes: int, device: torch.device,
             show_progress: bool, unreadable: UnreadableImages,
             should_stop: Callable[[], bool] | None = None) -> tuple[float, float] | None:
    """Top-1 accuracy and mean per-class accuracy (percent) over the loader's readable images (its shards summed
    across ranks; skipped images go to `unreadable`); None if `should_stop` says so before the end."""
    classifier.eval()
    correct = torch.zeros(num_classes, device=device)
    total = torch.zeros(num_classes, device=device)
    for images, labels, skipped in tqdm(loader, desc="eval", leave=False, disable=None if show_progress else True):
        unreadable.add(skipped)
        if should_stop is not None and should_stop():
            return None
        if images is None:
            continue
        labels = labels.to(device)
        hits = classifier(images.to(device))[0].argmax(1) == labels
        total += torch.bincount(labels, minlength=num_classes)
        correct += torch.bincount(labels[hits], minlength=num_classes)
    if is_distributed():
        dist.all_reduce(correct)
        dist.all_reduce(total)
    seen = total > 0
    accuracy = (correct.sum() / total.sum().clamp_min(1)).item() * 100
    mean_class = (correct[seen] / total[seen]).mean().item() * 100 if seen.any() else 0.0
    return accuracy, mean_class
