"""What the loaders say when data is missing, incomplete, unreadable or asked for wrongly, and failed downloads."""

from pathlib import Path
from urllib.error import URLError

import pytest

import datasets
from datasets.officehome import CLASSES as OFFICE_HOME_CLASSES
from tests.datasets.helpers import JPEG, make_office31, write_images


@pytest.mark.parametrize(
    ("name", "domain", "expected"),
    [
        ("office31", "W", "webcam/images"),
        ("officehome", "Rw", "Real_World"),
        ("visda2017", "Real", "validation"),
        ("cub200", None, "CUB_200_2011/images.txt"),
        ("aircraft", None, "fgvc-aircraft-2013b/data/variants.txt"),
        ("cars", None, "stanford_cars/devkit/cars_meta.mat"),
    ],
)
def test_missing_dataset_names_expected_files(tmp_path, name, domain, expected):
    with pytest.raises(datasets.DatasetNotFoundError) as caught:
        datasets.get_dataset(name, tmp_path / "nowhere", domain)
    assert isinstance(caught.value, FileNotFoundError)
    assert str(tmp_path / "nowhere" / expected) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "domain", "url_part"),
    [
        ("office31", "D", "cloud.tsinghua.edu.cn"),
        ("visda2017", "Synthetic", "cloud.tsinghua.edu.cn"),
        ("cub200", None, "data.caltech.edu"),
        ("cars", None, "cloud.tsinghua.edu.cn"),
    ],
)
def test_failed_download_raises(tmp_path, monkeypatch, name, domain, url_part):
    def offline(url, **kwargs):
        raise URLError("network unreachable")

    monkeypatch.setattr("datasets.download.download_and_extract_archive", offline)
    with pytest.raises(datasets.DatasetNotFoundError, match=f"download from .*{url_part}.*network unreachable"):
        datasets.get_dataset(name, tmp_path, domain, download=True)


def test_failed_torchvision_aircraft_download_raises(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("network unreachable")

    monkeypatch.setattr("torchvision.datasets.fgvc_aircraft.download_and_extract_archive", offline)
    with pytest.raises(datasets.DatasetNotFoundError, match="FGVC-Aircraft: download from torchvision"):
        datasets.get_dataset("aircraft", tmp_path, download=True)


def test_download_fetches_only_missing_archives(tmp_path, monkeypatch):
    fetched = []

    def fake_download(url, download_root, filename):
        fetched.append(filename)
        if filename == "amazon.tgz":
            make_office31(Path(download_root), with_list=False)
        else:
            (Path(download_root) / "image_list").mkdir()

    monkeypatch.setattr("datasets.download.download_and_extract_archive", fake_download)
    assert len(datasets.get_dataset("office31", tmp_path, "A", download=True)) == 32
    assert fetched == ["image_list.zip", "amazon.tgz"]
    datasets.get_dataset("office31", tmp_path, "A", download=True)
    assert len(fetched) == 2


def test_download_that_unpacks_elsewhere_raises(tmp_path, monkeypatch):
    monkeypatch.setattr("datasets.download.download_and_extract_archive", lambda url, **kwargs: None)
    with pytest.raises(datasets.DatasetNotFoundError, match="did not create the expected"):
        datasets.get_dataset("officehome", tmp_path, "Pr", download=True)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted"])
def test_unreadable_image_names_the_file(tmp_path, damage):
    relative = make_office31(tmp_path)
    broken = tmp_path / relative[3]
    if damage == "deleted":
        broken.unlink()
    else:
        broken.write_bytes(b"not an image" if damage == "garbage" else JPEG[: len(JPEG) // 2])
    data = datasets.get_dataset("office31", tmp_path, "A")
    with pytest.raises(datasets.ImageReadError, match=str(broken)):
        data[3]


@pytest.mark.parametrize("with_list", [True, False])
def test_missing_class_folders_are_named(tmp_path, with_list):
    make_office31(tmp_path, with_list)
    for name in ("mug", "ruler"):
        for path in (tmp_path / "amazon" / "images" / name).iterdir():
            path.unlink()
        (tmp_path / "amazon" / "images" / name).rmdir()
    with pytest.raises(datasets.DatasetNotFoundError, match="2 of 31 classes .*: mug, ruler"):
        datasets.get_dataset("office31", tmp_path, "A")


def test_empty_class_folder_is_named(tmp_path):
    write_images([tmp_path / "Art" / name / "a.jpg" for name in OFFICE_HOME_CLASSES[1:]])
    (tmp_path / "Art" / OFFICE_HOME_CLASSES[0]).mkdir()
    with pytest.raises(datasets.DatasetNotFoundError, match="1 of 65 classes .*: Alarm_Clock"):
        datasets.get_dataset("officehome", tmp_path, "Art")


def test_malformed_list_line_is_located(tmp_path):
    make_office31(tmp_path)
    with (tmp_path / "image_list" / "amazon.txt").open("a") as f:
        f.write("amazon/images/mug/negative_label.jpg -1\n")
    with pytest.raises(ValueError, match=r"amazon.txt:33: expected 'relative/path label'"):
        datasets.get_dataset("office31", tmp_path, "A")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"name": "office31", "domain": "X"}, r"unknown domain 'X'; choose one of \['A', 'W', 'D'\]"),
        ({"name": "office31"}, "unknown domain None"),
        ({"name": "cub200", "split": "val"}, "unknown split 'val'"),
        ({"name": "cars", "domain": "A"}, "without domains"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        datasets.get_dataset(root=tmp_path, **kwargs)
