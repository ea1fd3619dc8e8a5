"""Image transforms of the TLlib protocol: square resize, (random-resized or center) crop, flip, ImageNet norm."""

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(
    resize: int | None = 256,
    crop: int = 224,
    center_crop: bool = False,
    scale: tuple[float, float] = (0.08, 1.0),
) -> T.Compose:
    """Training augmentation.

    Domain adaptation: resize to resize x resize, RandomResizedCrop(crop, scale) (or a center crop, as TLlib does
    for VisDA-2017), horizontal flip. Fine-tuning uses scale=(0.2, 1.0); resize=None skips the square resize and
    crops from the original image, as TLlib's fine-tuning recipe does.
    """
    steps = [] if resize is None else [T.Resize((resize, resize))]
    steps.append(T.CenterCrop(crop) if center_crop else T.RandomResizedCrop(crop, scale=scale))
    steps += [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def test_transform(resize: int = 256, crop: int = 224) -> T.Compose:
    """Evaluation: resize to resize x resize, center crop, ImageNet normalisation."""
    return T.Compose(
        [T.Resize((resize, resize)), T.CenterCrop(crop), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


test_transform.__test__ = False  # its name starts with "test": keep pytest from collecting it where it is imported
