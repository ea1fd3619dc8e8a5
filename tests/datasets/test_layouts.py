"""Every loader on miniature copies of the real layouts: Office-31, Office-Home, VisDA-2017, CUB-200, FGVC-Aircraft,
Stanford Cars (native and TLlib layouts)."""

import sys

import pytest
from PIL import Image

import datasets
from datasets import transforms as dt
from datasets.office31 import CLASSES as OFFICE31_CLASSES
from datasets.officehome import CLASSES as OFFICE_HOME_CLASSES
from datasets.visda2017 import CLASSES as VISDA_CLASSES
from tests.datasets.helpers import PNG, make_office31, make_tllib_finegrained, write_images


@pytest.mark.parametrize("with_list", [True, False])
@pytest.mark.parametrize("domain", ["A", "amazon", "AMAZON"])
def test_office31(tmp_path, with_list, domain):
    relative = make_office31(tmp_path, with_list)
    data = datasets.get_dataset("Office-31", tmp_path, domain, split="test")
    assert len(data) == 32 and data.num_classes == 31 and data.classes == list(OFFICE31_CLASSES)
    assert sorted(str(p.relative_to(tmp_path)) for p, _ in data.samples) == sorted(relative)
    assert all(OFFICE31_CLASSES[label] == path.parent.name for path, label in data.samples)
    image, label = data[0]
    assert isinstance(image, Image.Image) and image.size == (8, 8) and label == 0


def test_officehome_list_is_relabelled_alphabetically(tmp_path):
    """TLlib's Office-Home lists use a non-alphabetical label order; labels follow the class folder instead."""
    lines = [f"Art/{name}/00001.jpg {64 - i}\n" for i, name in enumerate(OFFICE_HOME_CLASSES)]
    write_images([tmp_path / line.split()[0] for line in lines])
    (tmp_path / "image_list").mkdir()
    (tmp_path / "image_list" / "Art.txt").write_text("".join(lines))
    data = datasets.get_dataset("officehome", tmp_path, "Ar")
    assert data.num_classes == 65
    assert [label for _, label in data.samples] == list(range(65))


@pytest.mark.parametrize("domain", ["Cl", "Clipart"])
def test_officehome_folders(tmp_path, domain):
    write_images([tmp_path / "Clipart" / name / "a.jpg" for name in OFFICE_HOME_CLASSES])
    data = datasets.get_dataset("OfficeHome", tmp_path, domain)
    assert len(data) == 65 and data.classes == list(OFFICE_HOME_CLASSES)
    assert all(OFFICE_HOME_CLASSES[label] == path.parent.name for path, label in data.samples)


@pytest.mark.parametrize(
    ("domain", "folder"), [("Synthetic", "train"), ("T", "train"), ("Real", "validation"), ("v", "validation")]
)
def test_visda2017(tmp_path, domain, folder):
    write_images([tmp_path / "train" / name / "src.png" for name in VISDA_CLASSES], PNG)
    write_images([tmp_path / "validation" / name / "real.jpg" for name in VISDA_CLASSES])
    data = datasets.get_dataset("visda-2017", tmp_path, domain)
    assert len(data) == 12 and data.num_classes == 12
    assert {path.parent.parent.name for path, _ in data.samples} == {folder}
    assert data[11][0].size == (8, 8) and data[11][1] == 11


def test_cub200_original_layout(tmp_path):
    base = tmp_path / "CUB_200_2011"
    names = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    rows = [(f"{n}/{n[4:]}_{i}.jpg", label + 1, i % 2) for label, n in enumerate(names) for i in range(3)]
    write_images([base / "images" / rel for rel, _, _ in rows])
    (base / "images.txt").write_text("".join(f"{k} {rel}\n" for k, (rel, _, _) in enumerate(rows, 1)))
    (base / "image_class_labels.txt").write_text("".join(f"{k} {c}\n" for k, (_, c, _) in enumerate(rows, 1)))
    (base / "train_test_split.txt").write_text("".join(f"{k} {1 - t}\n" for k, (_, _, t) in enumerate(rows, 1)))
    train, test = (datasets.get_dataset("CUB200", tmp_path, split=split) for split in ("train", "test"))
    assert (len(train), len(test)) == (6, 3)
    assert train.classes == test.classes == names and train.num_classes == 3
    assert sorted(train.targets) == [0, 0, 1, 1, 2, 2]
    assert train[0][0].size == (8, 8)


def test_aircraft_original_layout(tmp_path):
    data_dir = tmp_path / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A320", "Boeing 717"]
    write_images([data_dir / "images" / f"{k:07d}.jpg" for k in range(6)])
    data_dir.joinpath("variants.txt").write_text("".join(f"{v}\n" for v in variants))
    data_dir.joinpath("images_variant_trainval.txt").write_text(
        "".join(f"{k:07d} {variants[k % 3]}\n" for k in range(3))
    )
    data_dir.joinpath("images_variant_test.txt").write_text(
        "".join(f"{k:07d} {variants[k % 3]}\n" for k in range(3, 6))
    )
    train = datasets.get_dataset("aircraft", tmp_path, split="train")
    test = datasets.get_dataset("FGVC-Aircraft", tmp_path, split="test")
    assert len(train) == len(test) == 3 and train.num_classes == 3 and train.classes == variants
    image, label = train[2]
    assert image.size == (8, 8) and label == 2


@pytest.mark.parametrize("name", ["cub200", "aircraft", "cars"])
def test_finegrained_tllib_layout(tmp_path, name):
    make_tllib_finegrained(tmp_path, ["1", "2", "3"])
    train = datasets.get_dataset(name, tmp_path, split="train", transform=dt.val_transform(resize_size=28))
    test = datasets.get_dataset(name, tmp_path, split="test")
    assert (len(train), len(test)) == (6, 3) and train.classes == test.classes == ["1", "2", "3"]
    image, label = train[5]
    assert image.shape == (3, 28, 28) and label == 2


def test_cars_native_layout_without_scipy_says_so(tmp_path, monkeypatch):
    base = tmp_path / "stanford_cars"
    for path in (base / "devkit" / "cars_meta.mat", base / "devkit" / "cars_train_annos.mat"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (base / "cars_train").mkdir()
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        datasets.get_dataset("cars", tmp_path)
