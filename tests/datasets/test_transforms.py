"""TLlib's transforms: output shapes of every variant and ImageNet normalisation."""

import pytest
import torch
from PIL import Image

from datasets import transforms as dt


@pytest.mark.parametrize(
    ("transform", "shape"),
    [
        (dt.train_transform(), (3, 224, 224)),
        (dt.train_transform("cen.crop"), (3, 224, 224)),
        (dt.train_transform("inc.crop", 48, scale=(0.2, 1.0)), (3, 48, 48)),
        (dt.train_transform(resize_size=64), (3, 64, 64)),
        (dt.val_transform(), (3, 224, 224)),
        (dt.val_transform(resize_size=64), (3, 64, 64)),
    ],
)
def test_transform_shapes(transform, shape):
    out = transform(Image.new("RGB", (100, 60), (128, 128, 128)))
    assert isinstance(out, torch.Tensor) and out.shape == shape and out.dtype == torch.float32


def test_test_transform_normalises_with_imagenet_statistics():
    out = dt.val_transform(resize_size=32)(Image.new("RGB", (64, 64), (255, 0, 128)))
    mean, std = torch.tensor(dt.IMAGENET_MEAN), torch.tensor(dt.IMAGENET_STD)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - mean) / std
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-5)
