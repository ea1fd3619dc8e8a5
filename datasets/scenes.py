"""Digit scenes: detection data that needs no download, in two domains for detection transfer.

Each scene is a black canvas of SIZE x SIZE with 1 to MAX_DIGITS handwritten digits from one digits domain (M:
MNIST, U: UCI optical digits, both shipped inside installed packages, see datasets/digits.py), each scaled to a side
between MIN_SIDE and MAX_SIDE and placed where its square overlaps no other. A digit's box is the tight box of its
non-zero pixels on the canvas (exact, since squares never overlap), its label the digit (1..10 for 0..9: index 0 is
the detectors' background). Train scenes use only the domain's train digits, test scenes its test digits.

Scene i of a (domain, split) is a pure function of (SEED, domain, split, i): the same on every machine, drawn on
demand in about a millisecond, so nothing is written to disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datasets.digits import CLASSES, DIGITS, load_digits_domain

SIZE = 80
MIN_SIDE, MAX_SIDE = 18, 36  # the side of a digit's 28-px frame on the canvas; the digit itself fills ~20/28 of it
MAX_DIGITS = 3
SEED = 0
SCENES = {"train": 2000, "test": 200}
LABEL_OFFSET = 1  # labels 1..10: 0 is the background class of torchvision's detectors
Target = dict[str, torch.Tensor]


def compose(digits: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray]:
    """One scene from uint8 digit frames (N x 28 x 28): the canvas (size x size uint8), the boxes (K x 4, x0 y0 x1
    y1 in pixels, x1/y1 exclusive) and the indices of the K digits used. Squares are drawn until 1..MAX_DIGITS fit
    without overlap (a square that overlaps is redrawn, at most 20 times)."""
    canvas = np.zeros((size, size), np.uint8)
    wanted = int(rng.integers(1, MAX_DIGITS + 1))
    squares: list[tuple[int, int, int]] = []
    for _ in range(20 * wanted):
        if len(squares) == wanted:
            break
        side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
        x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        if all(x + side <= ox or ox + os <= x or y + side <= oy or oy + os <= y for ox, oy, os in squares):
            squares.append((x, y, side))
    chosen = rng.integers(0, len(digits), size=len(squares))
    boxes = []
    for (x, y, side), index in zip(squares, chosen, strict=True):
        patch = np.asarray(Image.fromarray(digits[index]).resize((side, side), Image.Resampling.BILINEAR))
        canvas[y:y + side, x:x + side] = patch
        rows, cols = np.flatnonzero(patch.any(1)), np.flatnonzero(patch.any(0))
        boxes.append((x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1))
    return canvas, np.array(boxes, np.float32).reshape(-1, 4), chosen


class DigitScenes(Dataset):
    """Scenes of one digits domain and split; item i is (image: float 3 x SIZE x SIZE in [0, 1], target: {"boxes":
    float K x 4 (x0, y0, x1, y1), "labels": int64 K, "image_id": i}), the format torchvision's detectors train on.

    `transform(image, target)` (e.g. torchvision transforms v2) is applied last when given.
    """

    def __init__(self, domain: str | None, split: str = "train", length: int | None = None,
                 transform: Callable[[torch.Tensor, Target], Any] | None = None) -> None:
        self.domain = DIGITS.resolve(domain)
        self.split = split
        source = load_digits_domain(self.domain, split)  # checks the split, names a missing package
        self.digits, self.targets = source.images, np.asarray(source.targets)
        self.length = SCENES[split] if length is None else length
        self.classes = list(CLASSES)
        self.transform = transform

    @property
    def num_classes(self) -> int:
        """Digit classes plus the background."""
        return len(self.classes) + LABEL_OFFSET

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"scene {index} of {self.length}")
        rng = np.random.default_rng([SEED, ord(self.domain), self.split == "test", index])
        canvas, boxes, chosen = compose(self.digits, rng)
        image = torch.from_numpy(canvas).float().div_(255).expand(3, -1, -1).contiguous()
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.as_tensor(self.targets[chosen] + LABEL_OFFSET),
                  "image_id": index}
        if self.transform is not None:
            return self.transform(image, target)
        return image, target
