"""The synthetic Office-31 stand-in: deterministic, atomic generation in Office-31's layout, distinct and learnable
domains, and its command line."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datasets
from datasets import synthetic
from datasets import transforms as dt
from datasets.office31 import CLASSES as OFFICE31_CLASSES


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
