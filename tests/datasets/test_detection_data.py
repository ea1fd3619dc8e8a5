"""COCO-format and Pascal VOC folders read through torchvision's datasets and transforms v2: images as float tensors,
boxes xyxy in pixels, labels as the detectors expect; bad boxes and missing files stop before training."""

import json

import pytest
import torch
from PIL import Image

from datasets.detection import BadAnnotationError, load_coco, load_voc
from datasets.errors import DatasetNotFoundError

VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>40</width><height>30</height><depth>3</depth>
</size>{objects}</annotation>"""
VOC_OBJECT = ("<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
              "<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>")


def write_voc(root, objects):
    """A VOC 2007 folder with one image per split, `objects` as (label, xyxy box) in each."""
    base = root / "VOCdevkit" / "VOC2007"
    for folder in ("ImageSets/Main", "JPEGImages", "Annotations"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for split, name in (("trainval", "000001"), ("test", "000002")):
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text(f"{name}\n")
        Image.new("RGB", (40, 30), (200, 10, 10)).save(base / "JPEGImages" / f"{name}.jpg")
        body = "".join(VOC_OBJECT.format(label=label, box=box) for label, box in objects)
        (base / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name, objects=body))
    return root


def test_voc_items(tmp_path):
    dataset = load_voc(write_voc(tmp_path, [("dog", (2, 3, 20, 25)), ("aeroplane", (0, 0, 40, 30))]), "train")
    image, target = dataset[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and image.max() <= 1
    assert target["boxes"].tolist() == [[2, 3, 20, 25], [0, 0, 40, 30]]
    assert target["labels"].tolist() == [12, 1]  # torchvision's VOC order, 0 is the background
    assert dataset.num_classes == 21


def test_voc_box_outside_the_image(tmp_path):
    with pytest.raises(BadAnnotationError, match="000001.xml: object dog: box .* inside its 40 x 30 image"):
        load_voc(write_voc(tmp_path, [("dog", (2, 3, 41, 25))]), "train")


def test_voc_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="trainval.txt is missing"):
        load_voc(tmp_path, "train")


def test_coco_items(tmp_path):
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "val2017" / "a.png")
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.png", "width": 32, "height": 24}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 10, 5], "area": 50, "iscrowd": 0}],
        "categories": [{"id": 3, "name": "car"}]}))
    dataset = load_coco(tmp_path, "test")
    image, target = dataset[0]
    assert image.shape == (3, 24, 32)
    assert target["boxes"].tolist() == [[1, 2, 11, 7]] and target["labels"].tolist() == [3]
    assert dataset.num_classes == 4
