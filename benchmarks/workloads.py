"""What one benchmark step trains: a model and a batch whose loss every mode computes alike.

Classification: a torchvision or timm classifier on random images, cross-entropy against random labels; the input
requires grad, so that its gradient is checked too. Detection: a torchvision detector (Faster R-CNN, RetinaNet,
Mask R-CNN, FCOS; backbone BN on running statistics, as MMDetection's norm_eval trains them) on random images with
random boxes, the sum of its training losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from benchmarks.models import calibrate_bn, random_model

DETECTORS = ("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "maskrcnn_resnet50_fpn", "fcos_resnet50_fpn")
BOXES_PER_IMAGE = 3


@dataclass
class Batch:
    """The inputs of one step and how a mode's runnable turns them into the loss."""

    input: Tensor | None  # the classification input, which requires grad; None for a detector
    loss: Callable[[Callable], Tensor]  # loss(run) for the runnable of a mode
    tensors: list[Tensor] = field(default_factory=list)  # every tensor the batch holds, for resident memory
    float64: Callable[[], Batch] | None = None  # the same batch in float64, where gradients are checked

    def zero_grad(self) -> None:
        if self.input is not None:
            self.input.grad = None

    def input_grads(self) -> dict[str, Tensor]:
        return {} if self.input is None else {"input": self.input.grad.to(torch.float64, copy=True)}


def classification(name: str, batch_size: int, resolution: int, device: torch.device) -> tuple[nn.Module, Batch]:
    """A calibrated classifier in eval mode and a batch of random images and labels."""
    x = torch.randn(batch_size, 3, resolution, resolution, device=device, requires_grad=True)
    model = calibrate_bn(random_model(name).to(device), x.detach())
    with torch.no_grad():
        y = torch.randint(model(x[:1]).shape[-1], (batch_size,), device=device)
    return model, _labelled(x, y)


def attack(name: str, batch_size: int, resolution: int, device: torch.device) -> tuple[nn.Module, Batch]:
    """The adversarial-example workload: a classifier with every parameter frozen, so that a step (one iteration
    of PGD, less its negligible sign update of the input) computes the input's gradient and nothing else."""
    model, batch = classification(name, batch_size, resolution, device)
    return model.requires_grad_(False), batch


def _labelled(x: Tensor, y: Tensor) -> Batch:
    def float64() -> Batch:
        return _labelled(x.detach().double().requires_grad_(), y)

    return Batch(x, lambda run: F.cross_entropy(run(x).float(), y), [x, y], float64)


def _targets(name: str, batch_size: int, resolution: int, device: torch.device) -> list[dict[str, Tensor]]:
    """Random boxes (and, for Mask R-CNN, their filled masks) with random labels, BOXES_PER_IMAGE per image."""
    targets = []
    for _ in range(batch_size):
        corner = torch.rand(BOXES_PER_IMAGE, 2) * resolution / 2
        size = (torch.rand(BOXES_PER_IMAGE, 2) * 0.4 + 0.1) * resolution
        boxes = torch.cat([corner, corner + size], dim=1).round()
        target = {"boxes": boxes.to(device), "labels": torch.randint(1, 91, (BOXES_PER_IMAGE,), device=device)}
        if name.startswith("maskrcnn"):
            masks = torch.zeros(BOXES_PER_IMAGE, resolution, resolution, dtype=torch.uint8)
            for mask, (x1, y1, x2, y2) in zip(masks, boxes.long().tolist(), strict=True):
                mask[y1:y2, x1:x2] = 1
            target["masks"] = masks.to(device)
        targets.append(target)
    return targets


def detection(name: str, batch_size: int, resolution: int, device: torch.device) -> tuple[nn.Module, Batch]:
    """A detector in training mode (its loss needs it) with a calibrated backbone, and random images with boxes.

    The detector resizes images to `resolution` itself (min_size = max_size), so the step is the size asked for.
    """
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, min_size=resolution,
                                         max_size=resolution).to(device)
    images = [torch.rand(3, resolution, resolution, device=device) for _ in range(batch_size)]
    calibrate_bn(model.backbone.body, torch.stack(images))
    targets = _targets(name, batch_size, resolution, device)
    tensors = [*images, *(tensor for target in targets for tensor in target.values())]
    return model.train(), Batch(None, lambda run: sum(run(images, targets).values()), tensors)


TASKS = ("train", "attack")


def build(name: str, batch_size: int, resolution: int, device: torch.device, task: str = "train"
          ) -> tuple[nn.Module, Batch]:
    """The model and batch a benchmark of `name` steps on: training (every parameter's gradient and the input's)
    or, for a classifier, the attack (the input's gradient alone)."""
    if name in DETECTORS:
        if task != "train":
            raise ValueError(f"--task {task} needs a classifier, not the detector {name}")
        return detection(name, batch_size, resolution, device)
    return (attack if task == "attack" else classification)(name, batch_size, resolution, device)
