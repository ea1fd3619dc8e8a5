"""Shared pieces of the dataset tests: tiny encoded images and miniature copies of the real dataset layouts."""

import io
from pathlib import Path

from PIL import Image

from datasets.office31 import CLASSES as OFFICE31_CLASSES


def encode(fmt: str, size: int = 8) -> bytes:
    """A tiny one-colour image encoded in `fmt` (JPEG, PNG)."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 140, 200)).save(buffer, fmt)
    return buffer.getvalue()


JPEG = encode("JPEG")
PNG = encode("PNG")


def write_images(paths: list[Path], data: bytes = JPEG) -> None:
    """Write `data` to every path, creating folders."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_office31(root: Path, with_list: bool = True, classes=OFFICE31_CLASSES) -> list[str]:
    """Fake amazon domain: one image per class (two for the first); returns the relative paths in list order."""
    lines, relative = [], []
    for label, name in enumerate(classes):
        for i in range(2 if label == 0 else 1):
            rel = f"amazon/images/{name}/frame_{i:04d}.jpg"
            relative.append(rel)
            lines.append(f"{rel} {OFFICE31_CLASSES.index(name)}\n")
    write_images([root / rel for rel in relative])
    if with_list:
        (root / "image_list").mkdir(parents=True, exist_ok=True)
        (root / "image_list" / "amazon.txt").write_text("".join(lines))
    return relative


def make_tllib_finegrained(root: Path, classes: list[str]) -> None:
    """TLlib's fine-grained layout: image_list/{train_100,test}.txt, two training and one test image per class."""
    for split, count in (("train_100", 2), ("test", 1)):
        folder = "train" if split != "test" else "test"
        lines = [f"{folder}/{name}/{i}.jpg {label}\n" for label, name in enumerate(classes) for i in range(count)]
        write_images([root / line.split()[0] for line in lines])
        (root / "image_list").mkdir(exist_ok=True)
        (root / "image_list" / f"{split}.txt").write_text("".join(lines))
