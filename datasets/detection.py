"""Real detection data for users: COCO-format and Pascal VOC folders through torchvision's datasets and transforms v2,
checked before training, plus the digit scenes (datasets/scenes.py), all yielding (image, {"boxes", "labels"}).

- coco: ROOT/annotations/instances_{train2017,val2017}.json with the images in ROOT/train2017, ROOT/val2017 (the
  official layout; any COCO-format set arranged so works). Labels are the category ids (background 0).
- voc: ROOT/VOCdevkit/VOC2007 as the official archive unpacks (trainval to train, test to evaluate); labels 1..20.
- scenes: digit scenes of domain M or U (datasets/scenes.py), generated on demand.

Every box must lie inside its image and have a positive width and height (torchvision's detectors stop on a
degenerate one deep inside the loss); a file that is missing or a box that is not stops here, naming the file and
what is expected. An image that cannot be read raises ImageReadError, which the engine skips and counts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from datasets.errors import DatasetNotFoundError, ImageReadError
from datasets.scenes import DigitScenes

DETECTION_NAMES = ("scenes", "coco", "voc")
COCO_SPLITS = {"train": "train2017", "test": "val2017"}
VOC_SPLITS = {"train": "trainval", "test": "test"}
VOC_YEAR = "2007"
NUM_VOC_CLASSES = 21  # 20 classes and the background


class BadAnnotationError(ValueError):
    """An annotation the detectors cannot train on (a box outside its image, or with no area)."""


def check_box(box: list[float], width: float, height: float, where: str) -> None:
    """Raise BadAnnotationError unless the xyxy `box` lies inside a width x height image and has an area."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise BadAnnotationError(f"{where}: box (x0 {x0:g}, y0 {y0:g}, x1 {x1:g}, y1 {y1:g}) is not a box of positive "
                                 f"size inside its {width:g} x {height:g} image: fix or remove that annotation")


class DetectionImages(Dataset):
    """A torchvision detection dataset wrapped for transforms v2; item i is (float image tensor in [0, 1], {"boxes":
    float K x 4 xyxy, "labels": int64 K}). An unreadable image raises ImageReadError naming its file."""

    def __init__(self, dataset: Dataset, num_classes: int, paths: list[Path]) -> None:
        self.dataset = tv_datasets.wrap_dataset_for_transforms_v2(dataset, target_keys={"boxes", "labels"})
        self.num_classes, self.paths = num_classes, paths
        self.to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        try:
            image, target = self.dataset[index]
        except (OSError, ValueError, SyntaxError) as err:
            error = ImageReadError(f"cannot read image {self.paths[index]}: {type(err).__name__}: {err}")
            error.path = str(self.paths[index])
            raise error from err
        image = self.to_tensor(image)
        boxes = target.get("boxes", torch.zeros(0, 4))
        return image, {"boxes": boxes.as_subclass(torch.Tensor).float().reshape(-1, 4),
                       "labels": torch.as_tensor(target.get("labels", []), dtype=torch.int64)}


def load_coco(root: Path, split: str) -> DetectionImages:
    """COCO-format `split` ("train" or "test") under `root`, its boxes checked against the image sizes it lists."""
    folder = root / COCO_SPLITS[split]
    annotations = root / "annotations" / f"instances_{COCO_SPLITS[split]}.json"
    for path in (annotations, folder):
        if not path.exists():
            raise DatasetNotFoundError(f"COCO: {path} is missing; expected {root}/annotations/instances_"
                                       f"{COCO_SPLITS[split]}.json and the images in {folder}/ (the official "
                                       f"layout of https://cocodataset.org)")
    try:
        dataset = tv_datasets.CocoDetection(str(folder), str(annotations))
    except (ValueError, KeyError, TypeError) as error:
        raise BadAnnotationError(f"COCO: {annotations} is not a COCO annotation file ({error})") from error
    coco = dataset.coco
    for annotation in coco.dataset.get("annotations", []):
        image = coco.imgs[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        check_box([x, y, x + w, y + h], image["width"], image["height"],
                  f"COCO: {annotations}: annotation {annotation.get('id')} of {image['file_name']}")
    num_classes = max(coco.cats, default=0) + 1
    paths = [folder / coco.imgs[image_id]["file_name"] for image_id in dataset.ids]
    return DetectionImages(dataset, num_classes, paths)


def load_voc(root: Path, split: str) -> DetectionImages:
    """Pascal VOC 2007 `split` ("train": trainval, "test": test) under `root`, every box checked."""
    base = root / "VOCdevkit" / f"VOC{VOC_YEAR}"
    listing = base / "ImageSets" / "Main" / f"{VOC_SPLITS[split]}.txt"
    if not listing.is_file():
        raise DatasetNotFoundError(f"VOC: {listing} is missing; expected {base}/ with ImageSets/, JPEGImages/ and "
                                   f"Annotations/ as VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar unpack")
    try:
        dataset = tv_datasets.VOCDetection(str(root), year=VOC_YEAR, image_set=VOC_SPLITS[split])
    except RuntimeError as error:
        raise DatasetNotFoundError(f"VOC: {error}") from error
    for path in map(Path, dataset.annotations):
        if not path.is_file():
            raise DatasetNotFoundError(f"VOC: annotation {path} is missing (listed in {listing})")
        annotation = dataset.parse_voc_xml(ET.parse(path).getroot())["annotation"]
        size = annotation["size"]
        for item in annotation.get("object", []):
            box = item["bndbox"]
            check_box([float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax")], float(size["width"]),
                      float(size["height"]), f"VOC: {path}: object {item.get('name')}")
    return DetectionImages(dataset, NUM_VOC_CLASSES, [Path(p) for p in dataset.images])


def load_detection(name: str, root: str | Path, domain: str | None, split: str) -> Any:
    """One split ("train" or "test") of a detection dataset by name; see the module's docstring."""
    if name == "scenes":
        return DigitScenes(domain, split)
    if domain is not None:
        raise ValueError(f"{name} has no domains; got {domain!r}")
    loaders = {"coco": load_coco, "voc": load_voc}
    if name not in loaders:
        raise ValueError(f"unknown detection dataset {name!r}; choose one of {list(DETECTION_NAMES)}")
    return loaders[name](Path(root), split)
