"""A tiny deterministic stand-in for Office-31, generated on first use, for smoke tests without real data.

It is written in exactly the Office-31 layout (image_list/*.txt + <domain>/images/<class>/*.jpg, the 31 real class
names), so the ordinary Office-31 loader reads it. Each class is a shape (8 kinds) in a colour (4 kinds), which a
network learns in a few iterations; the domains differ in rendering: amazon = clean objects on white, webcam =
low-contrast noisy grey camera look, dslr = blurred with a warm colour cast on a textured background.
Generation is atomic (temp folder + rename), so an interrupted or concurrent first use never leaves half a dataset.

    python -m datasets.synthetic [root]   # generate (if needed) and print a summary
"""

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from datasets.domain_adaptation import load_domain
from datasets.office31 import CLASSES, OFFICE31

VERSION = 1  # bump whenever the generated files change
SEED = 0
SIZE = 64
PER_CLASS = {"amazon": 8, "webcam": 4, "dslr": 3}
MARKER = "SYNTHETIC_VERSION"
DEFAULT_ROOT = Path("data/synthetic")
SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond", "bars", "checker")
COLOURS = ((205, 40, 40), (40, 155, 60), (45, 75, 205), (235, 170, 25))


def ensure_synthetic(root: str | Path) -> Path:
    """Return `root`, generating the dataset there first unless this generator version already did."""
    root = Path(root)
    if _is_current(root):
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} is not empty but holds no synthetic dataset of generator version {VERSION} "
            f"(marker {root / MARKER}); delete it to regenerate."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        generate(staging)
        staging.chmod(0o755)
        try:
            staging.rename(root)  # atomic; replaces `root` only if it is absent or an empty folder
        except OSError:
            if not _is_current(root):  # anything but "another process finished first" is a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def generate(target: Path) -> dict[str, int]:
    """Write all images, lists and the version marker into the existing folder `target`; return image counts."""
    (target / "image_list").mkdir()
    counts = {}
    for domain_index, (domain, per_class) in enumerate(PER_CLASS.items()):
        lines = []
        for label, name in enumerate(CLASSES):
            folder = target / domain / "images" / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                rng = np.random.default_rng([SEED, domain_index, label, i])
                relative = f"{domain}/images/{name}/frame_{i + 1:04d}.jpg"
                render(label, domain, rng).save(target / relative, "JPEG", quality=90)
                lines.append(f"{relative} {label}\n")
        (target / "image_list" / f"{domain}.txt").write_text("".join(lines))
        counts[domain] = len(lines)
    (target / MARKER).write_text(f"{VERSION}\n")
    return counts


def render(label: int, domain: str, rng: np.random.Generator) -> Image.Image:
    """Draw one image of class `label` (shape x colour) in the style of `domain`."""
    colour = np.array(COLOURS[label // len(SHAPES)], dtype=float) + rng.normal(0.0, 12.0, 3)
    mask = shape_mask(SHAPES[label % len(SHAPES)], rng)[..., None]
    image = _background(domain, rng) * (1.0 - mask) + colour * mask
    if domain == "webcam":
        image = 118.0 + 0.55 * (image - 128.0) + rng.normal(0.0, 14.0, image.shape)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    if domain == "dslr":
        cast = np.asarray(picture.filter(ImageFilter.GaussianBlur(1.3)), dtype=float) * (1.12, 1.0, 0.78)
        picture = Image.fromarray(np.clip(cast, 0, 255).astype(np.uint8))
    return picture


def shape_mask(shape: str, rng: np.random.Generator) -> np.ndarray:
    """A SIZE x SIZE 0/1 mask of `shape`, randomly placed, sized and rotated so images of a class differ."""
    centre = SIZE / 2 + rng.uniform(-8.0, 8.0, 2)
    radius = rng.uniform(15.0, 22.0)
    angle = rng.uniform(-0.4, 0.4)
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dx, dy = x - centre[0], y - centre[1]
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    distance, box = np.hypot(u, v), np.maximum(abs(u), abs(v))
    cell = np.floor(u / (0.45 * radius)) + np.floor(v / (0.45 * radius))
    masks = {
        "disk": distance <= radius,
        "square": box <= 0.85 * radius,
        "triangle": (v <= 0.6 * radius) & (v >= -radius + 1.8 * abs(u)),
        "cross": ((abs(u) <= 0.3 * radius) | (abs(v) <= 0.3 * radius)) & (box <= radius),
        "ring": (distance <= radius) & (distance >= 0.55 * radius),
        "diamond": abs(u) + abs(v) <= radius,
        "bars": (box <= 0.9 * radius) & (np.floor(v / (0.45 * radius)) % 2 == 0),
        "checker": (box <= 0.9 * radius) & (cell % 2 == 0),
    }
    return masks[shape].astype(float)


def _background(domain: str, rng: np.random.Generator) -> np.ndarray:
    """White for amazon, a grey gradient for webcam, a smooth beige texture for dslr."""
    if domain == "amazon":
        return np.full((SIZE, SIZE, 3), 250.0) + rng.normal(0.0, 2.0, (SIZE, SIZE, 3))
    if domain == "webcam":
        gradient = np.linspace(105.0, 150.0, SIZE)[:, None, None]
        return np.broadcast_to(gradient, (SIZE, SIZE, 3)) + rng.uniform(-10.0, 10.0, 3)
    coarse = rng.normal(0.0, 25.0, (8, 8)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    return np.array((200.0, 180.0, 150.0)) + texture[..., None]


def _is_current(root: Path) -> bool:
    marker = root / MARKER
    return marker.is_file() and marker.read_text().strip() == str(VERSION)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate into the given root (default data/synthetic) and print what is there."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) > 1:
        print(f"usage: python -m datasets.synthetic [root]   (default {DEFAULT_ROOT})", file=sys.stderr)
        return 2
    root = Path(args[0]) if args else DEFAULT_ROOT
    existed = _is_current(root)
    start = time.perf_counter()
    ensure_synthetic(root)
    elapsed = time.perf_counter() - start
    state = "already present" if existed else f"generated in {elapsed:.2f} s"
    print(f"Synthetic Office-31 (generator v{VERSION}, seed {SEED}) at {os.path.abspath(root)}: {state}")
    for short, folder in OFFICE31.folders.items():
        dataset = load_domain(OFFICE31, root, short)
        print(f"  {short} ({folder}): {len(dataset)} images, {dataset.num_classes} classes, {SIZE}x{SIZE} JPEG")
    return 0


if __name__ == "__main__":
    sys.exit(main())
