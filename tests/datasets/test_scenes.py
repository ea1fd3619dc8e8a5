"""Digit scenes: the same on every call, boxes that tightly enclose each digit's pixels, digits drawn from the
right split, and the target format torchvision's detectors train on."""

import numpy as np
import pytest
import torch

from datasets import scenes
from datasets.digits import load_digits_domain


@pytest.mark.parametrize("domain", ["M", "U"])
def test_scenes_are_deterministic(domain):
    first, second = scenes.DigitScenes(domain, "train"), scenes.DigitScenes(domain, "train")
    for index in (0, 7, 1999):
        (image_a, target_a), (image_b, target_b) = first[index], second[index]
        assert torch.equal(image_a, image_b)
        assert torch.equal(target_a["boxes"], target_b["boxes"]) and torch.equal(target_a["labels"], target_b["labels"])
    assert not torch.equal(first[0][0], first[1][0])
    assert not torch.equal(first[0][0], scenes.DigitScenes(domain, "test")[0][0])


@pytest.mark.parametrize("domain", ["M", "U"])
def test_boxes_enclose_each_digit_exactly(domain):
    """Boxes never overlap; every non-zero pixel lies in a box and every box edge touches a non-zero pixel, so each
    box is the tight box of its digit's pixels."""
    dataset = scenes.DigitScenes(domain, "test")
    counts = set()
    for index in range(50):
        image, target = dataset[index]
        assert image.shape == (3, scenes.SIZE, scenes.SIZE) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        canvas = image[0].numpy() > 0
        boxes = target["boxes"].numpy().astype(int)
        assert np.array_equal(target["boxes"].numpy(), boxes)  # whole pixels
        counts.add(len(boxes))
        covered = np.zeros_like(canvas)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= scenes.SIZE and 0 <= y0 < y1 <= scenes.SIZE
            assert not covered[y0:y1, x0:x1].any()  # no overlap
            covered[y0:y1, x0:x1] = True
            inside = canvas[y0:y1, x0:x1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert not (canvas & ~covered).any()
        labels = target["labels"]
        assert labels.dtype == torch.int64 and len(labels) == len(boxes)
        assert ((labels >= 1) & (labels <= 10)).all()
    assert counts == set(range(1, scenes.MAX_DIGITS + 1))


def test_scenes_use_their_splits_digits():
    for split in ("train", "test"):
        assert np.array_equal(scenes.DigitScenes("U", split).digits, load_digits_domain("U", split).images)


def test_scene_is_its_seeded_composition():
    """Item i is compose() of its own seed; labels are the chosen digits' classes plus one (0 is background)."""
    digits = load_digits_domain("M", "train")
    for index in range(30):
        rng = np.random.default_rng([scenes.SEED, ord("M"), False, index])
        canvas, boxes, chosen = scenes.compose(digits.images, rng)
        target = scenes.DigitScenes("M", "train")[index][1]
        assert torch.equal(target["labels"], torch.as_tensor(np.asarray(digits.targets)[chosen] + 1))
        assert np.array_equal(target["boxes"].numpy(), boxes)


def test_unknown_domain_and_split():
    with pytest.raises(ValueError):
        scenes.DigitScenes("X")
    with pytest.raises(ValueError):
        scenes.DigitScenes("M", "val")
