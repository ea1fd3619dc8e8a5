"""The data a run reads: resumable streams split across ranks, and unreadable images (skipped, counted, logged;
the run stops with a checkpoint only when more than --bad-image-limit of its images are bad)."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch

import datasets
from datasets.imagelist import ImageList
from datasets.synthetic import ensure_synthetic
from datasets.transforms import val_transform
from experiments import engine
from experiments.data import ReadableSamples, SeededSamples, StreamSampler, collate_readable
from experiments.finetune import FineTune
from tests.experiments.helpers import scalars, task_args

pytestmark = pytest.mark.usefixtures("single_thread")


def take(sampler: StreamSampler, n: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), n))


def test_stream_is_split_across_ranks_and_resumable():
    whole = take(StreamSampler(10, (0, 0)), 40)  # four passes over ten samples
    for lap in range(4):
        assert sorted(index for index, _ in whole[10 * lap : 10 * lap + 10]) == list(range(10))
    assert [index for index, _ in whole[:10]] != [index for index, _ in whole[10:20]]  # a new order per pass
    ranks = [take(StreamSampler(10, (0, 0), rank=rank, world_size=2), 20) for rank in range(2)]
    assert [item for pair in zip(*ranks, strict=True) for item in pair] == whole
    assert take(StreamSampler(10, (0, 0), start=13), 27) == whole[13:]
    assert take(StreamSampler(10, (1, 0)), 40) != whole


@pytest.fixture
def own_data(synthetic_data, tmp_path):
    """A private copy of the synthetic data, free to damage."""
    return shutil.copytree(ensure_synthetic(synthetic_data), tmp_path / "data")


def domain(root, name: str) -> ImageList:
    return datasets.get_dataset("synthetic", root, name, transform=val_transform(resize_size=8))


def test_an_unreadable_image_is_replaced_in_training_and_left_out_in_evaluation(own_data):
    dslr = domain(own_data, "D")
    broken = [dslr.samples[i][0] for i in (3, 4)]
    for path in broken:
        path.write_bytes(b"not a jpeg")
    training = SeededSamples(dslr)
    image, label, skipped = training[(3, 7)]
    assert torch.equal(image, training[(5, 7)][0]) and label == dslr.targets[5]  # the next readable one
    assert [str(path) in line for line, path in zip(skipped.splitlines(), broken, strict=True)] == [True, True]
    assert training[(6, 7)][2] == ""
    images, labels, skipped = collate_readable([ReadableSamples(dslr)[i] for i in (2, 3, 4, 5)])
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [dslr.targets[2], dslr.targets[5]]
    assert len(skipped) == 2 and str(broken[0]) in skipped[0]
    for path, _ in dslr.samples:
        path.write_bytes(b"")
    with pytest.raises(datasets.ImageReadError, match="no image of the dataset is readable"):
        training[(0, 0)]


def test_a_run_skips_counts_and_logs_unreadable_images(own_data, tmp_path, capsys):
    source = domain(own_data, "A")
    first_drawn = source.samples[next(iter(StreamSampler(len(source), (0, 0))))[0]][0]
    target = domain(own_data, "D").samples[10][0]
    for path in (first_drawn, target):
        path.write_bytes(b"\xff\xd8 truncated")
    run_dir = tmp_path / "run"
    assert engine.main(FineTune, task_args(own_data, run_dir)) == 0
    warnings = capsys.readouterr().err
    assert str(first_drawn) in warnings and str(target) in warnings
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["unreadable_images"]) == 2
    assert scalars(run_dir)["data/unreadable_images"][0] == (0, 1.0)  # the source image, in the first window
    log = (run_dir / "log.txt").read_text()
    assert f"skipped an unreadable image (1 so far): cannot read image {first_drawn}" in log
    assert f"(2 so far): cannot read image {target}" in log


def test_too_many_unreadable_images_stop_the_run_with_a_checkpoint(own_data, tmp_path, capsys):
    target = domain(own_data, "D")
    broken = [path for path, _ in target.samples[:6]]  # of the 248 + 93 images FineTune reads: more than 1%
    originals = {path: path.read_bytes() for path in broken}
    for path in broken:
        path.write_bytes(b"")
    run_dir = tmp_path / "run"
    argv = task_args(own_data, run_dir)
    assert engine.main(FineTune, argv) == 1
    error = capsys.readouterr().err
    assert ("error: 4 unreadable images among the 341 this run reads (so far), more than --bad-image-limit 0.01 "
            "allows") in error  # the evaluation's first batch
    assert "Traceback" not in error
    state = torch.load(run_dir / "checkpoint.pt")
    assert (state["step"], state["evaluated_epochs"], len(state["unreadable"])) == (2, 0, 4)
    assert not (run_dir / "results.json").exists()
    for path, content in originals.items():
        path.write_bytes(content)
    assert engine.main(FineTune, [*argv, "--resume", str(run_dir)]) == 0
    assert [step for step, _ in scalars(run_dir)["eval/target_acc"]] == [0]
