"""Image transforms of the TLlib protocol, with TLlib's resizing modes and meanings.

`resize_size` S is the size of the image fed to the network (TLlib's --resize-size). Where a mode first resizes to
a square, the square is 256/224 x S (256 for S = 224), as in TLlib's ResizeImage(256) before a 224 crop.
"""

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Training: square resize then RandomResizedCrop (TLlib's domain-adaptation default), square resize then center
# crop (VisDA-2017) or random crop, a straight resize, or RandomResizedCrop of the original image (the Inception
# crop; TLlib's fine-tuning recipe).
TRAIN_RESIZING = ("default", "cen.crop", "ran.crop", "res.", "inc.crop")
# Evaluation: square resize then center crop, or a straight resize.
VAL_RESIZING = ("default", "res.")


def square_size(resize_size: int) -> int:
    """Side of the square images are resized to before a crop of `resize_size` (256 for 224)."""
    return round(resize_size * 256 / 224)


def train_transform(
    resizing: str = "default",
    resize_size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: bool = True,
    norm_mean: tuple[float, ...] = IMAGENET_MEAN,
    norm_std: tuple[float, ...] = IMAGENET_STD,
) -> T.Compose:
    """Training augmentation: `resizing` (one of TRAIN_RESIZING) to `resize_size`, an optional horizontal flip,
    normalisation; `scale` and `ratio` are RandomResizedCrop's."""
    square = T.Resize((square_size(resize_size),) * 2)
    steps = {
        "default": [square, T.RandomResizedCrop(resize_size, scale=scale, ratio=ratio)],
        "cen.crop": [square, T.CenterCrop(resize_size)],
        "ran.crop": [square, T.RandomCrop(resize_size)],
        "res.": [T.Resize((resize_size, resize_size))],
        "inc.crop": [T.RandomResizedCrop(resize_size, scale=scale, ratio=ratio)],
    }[resizing]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(norm_mean, norm_std)])


def val_transform(
    resizing: str = "default",
    resize_size: int = 224,
    norm_mean: tuple[float, ...] = IMAGENET_MEAN,
    norm_std: tuple[float, ...] = IMAGENET_STD,
) -> T.Compose:
    """Evaluation: `resizing` (one of VAL_RESIZING) to `resize_size`, normalisation."""
    steps = {
        "default": [T.Resize((square_size(resize_size),) * 2), T.CenterCrop(resize_size)],
        "res.": [T.Resize((resize_size, resize_size))],
    }[resizing]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(norm_mean, norm_std)])
