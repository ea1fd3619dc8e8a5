"""Tests of the datasets package: the synthetic generator, every loader on tiny fake layouts, and error paths."""

import io
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from datasets import synthetic
from datasets import transforms as dt
from datasets.office31 import CLASSES as OFFICE31_CLASSES
from datasets.officehome import CLASSES as OFFICE_HOME_CLASSES
from datasets.visda2017 import CLASSES as VISDA_CLASSES


def _encode(fmt: str, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 140, 200)).save(buffer, fmt)
    return buffer.getvalue()


JPEG = _encode("JPEG")
PNG = _encode("PNG")


def write_images(paths: list[Path], data: bytes = JPEG) -> None:
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
    for split, count in (("train_100", 2), ("test", 1)):
        folder = "train" if split != "test" else "test"
        lines = [f"{folder}/{name}/{i}.jpg {label}\n" for label, name in enumerate(classes) for i in range(count)]
        write_images([root / line.split()[0] for line in lines])
        (root / "image_list").mkdir(exist_ok=True)
        (root / "image_list" / f"{split}.txt").write_text("".join(lines))


# ---------------------------------------------------------------------------------------------- synthetic data


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return synthetic.ensure_synthetic(tmp_path_factory.mktemp("synthetic") / "data")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(path: Path, size: int | None = None) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image if size is None else image.resize((size, size)), dtype=float)


def _domain_pixels(root: Path, folder: str) -> np.ndarray:
    return np.stack([_pixels(p) for p in sorted((root / folder).rglob("*.jpg"))])


def test_synthetic_generation_is_deterministic(tmp_path, synthetic_root):
    other = synthetic.ensure_synthetic(tmp_path / "again")
    assert _tree(other) == _tree(synthetic_root)


def test_synthetic_layout_is_office31(synthetic_root):
    assert (synthetic_root / synthetic.MARKER).read_text().strip() == str(synthetic.VERSION)
    for folder, per_class in synthetic.PER_CLASS.items():
        lines = (synthetic_root / "image_list" / f"{folder}.txt").read_text().splitlines()
        assert len(lines) == per_class * 31
        assert sorted(p.name for p in (synthetic_root / folder / "images").iterdir()) == list(OFFICE31_CLASSES)
        for line in lines:
            rel, label = line.split()
            assert Path(rel).parent.name == OFFICE31_CLASSES[int(label)]
            assert (synthetic_root / rel).is_file()
    assert _pixels(next((synthetic_root / "dslr").rglob("*.jpg"))).shape == (synthetic.SIZE, synthetic.SIZE, 3)


def test_synthetic_loads_through_office31_loader(synthetic_root):
    for short, folder in zip("AWD", ("amazon", "webcam", "dslr"), strict=True):
        via_synthetic = datasets.get_dataset("synthetic", synthetic_root, short)
        via_office = datasets.get_dataset("office31", synthetic_root, folder)
        assert via_synthetic.samples == via_office.samples
        assert len(via_synthetic) == 31 * synthetic.PER_CLASS[folder]
        assert via_synthetic.classes == list(OFFICE31_CLASSES) and via_synthetic.num_classes == 31
    image, label = datasets.get_dataset("synthetic", synthetic_root, "A", transform=dt.val_transform())[-1]
    assert image.shape == (3, 224, 224) and label == 30


def test_synthetic_domains_differ(synthetic_root):
    amazon, webcam, dslr = (_domain_pixels(synthetic_root, d) for d in ("amazon", "webcam", "dslr"))
    means = [x.mean() for x in (amazon, webcam, dslr)]
    assert min(abs(a - b) for i, a in enumerate(means) for b in means[i + 1 :]) > 20  # brightness
    assert webcam.std(axis=(1, 2, 3)).mean() < 0.5 * amazon.std(axis=(1, 2, 3)).mean()  # low contrast
    red, _, blue = dslr.mean(axis=(0, 1, 2))
    assert red - blue > 50  # warm colour cast


def test_synthetic_classes_are_learnable(synthetic_root):
    """Leave-one-out nearest neighbour on raw 16x16 pixels is far above the 1/31 chance level."""
    data = datasets.get_dataset("synthetic", synthetic_root, "A")
    features = np.stack([_pixels(p, 16).ravel() for p, _ in data.samples])
    labels = np.array(data.targets)
    distances = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(1)] == labels).mean() > 0.25


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_render(*args):
        calls.append(1)
        if len(calls) > 40:
            raise KeyboardInterrupt
        return Image.new("RGB", (4, 4))

    monkeypatch.setattr(synthetic, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_synthetic(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_first_use_keeps_the_winner(tmp_path, monkeypatch):
    """Another process finishes while we generate: our rename fails, we discard our copy and use theirs."""
    root = tmp_path / "data"
    real_generate = synthetic.generate

    def racing_generate(target):
        monkeypatch.setattr(synthetic, "generate", real_generate)
        synthetic.ensure_synthetic(root)  # the "other process"
        (root / "winner").write_text("")
        return real_generate(target)

    monkeypatch.setattr(synthetic, "generate", racing_generate)
    assert synthetic.ensure_synthetic(root) == root
    assert (root / "winner").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging folder left behind


def test_generation_into_existing_empty_folder_and_reuse(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    synthetic.ensure_synthetic(root)
    marker_time = (root / synthetic.MARKER).stat().st_mtime_ns
    synthetic.ensure_synthetic(root)
    assert (root / synthetic.MARKER).stat().st_mtime_ns == marker_time


def test_foreign_or_outdated_folder_is_not_overwritten(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / synthetic.MARKER).write_text("0\n")
    with pytest.raises(FileExistsError, match="delete it to regenerate"):
        synthetic.ensure_synthetic(tmp_path / "data")


def test_command_line_prints_summary(synthetic_root, capsys):
    assert synthetic.main([str(synthetic_root)]) == 0
    out = capsys.readouterr().out
    assert "already present" in out and "A (amazon): 248 images, 31 classes" in out


# ------------------------------------------------------------------------------------- real layouts, in miniature


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


# ----------------------------------------------------------------------------------------------------- errors


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


# -------------------------------------------------------------------------------------- catalogue and transforms


def test_domains_and_tasks():
    assert datasets.canonical_name("VisDA-2017") == datasets.canonical_name("visda") == "visda2017"
    assert datasets.domains("office31") == datasets.domains("synthetic") == ["A", "W", "D"]
    assert datasets.tasks("Office-31") == [("A", "W"), ("D", "W"), ("W", "D"), ("A", "D"), ("D", "A"), ("W", "A")]
    assert datasets.tasks("synthetic") == datasets.tasks("office31")
    assert datasets.domains("OFFICE_HOME") == ["Ar", "Cl", "Pr", "Rw"]
    home = datasets.tasks("officehome")
    assert len(home) == len(set(home)) == 12 and home[:3] == [("Ar", "Cl"), ("Ar", "Pr"), ("Ar", "Rw")]
    assert datasets.domains("VisDA-2017") == ["Synthetic", "Real"] and datasets.tasks("visda") == [
        ("Synthetic", "Real")
    ]
    for name in ("cub200", "aircraft", "cars"):
        assert datasets.domains(name) == datasets.tasks(name) == []


def test_class_lists():
    assert len(OFFICE31_CLASSES) == 31 and list(OFFICE31_CLASSES) == sorted(OFFICE31_CLASSES)
    assert len(OFFICE_HOME_CLASSES) == 65 and list(OFFICE_HOME_CLASSES) == sorted(OFFICE_HOME_CLASSES)
    assert len(VISDA_CLASSES) == 12 and list(VISDA_CLASSES) == sorted(VISDA_CLASSES)


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
