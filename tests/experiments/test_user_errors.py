"""Every user error ends in one line `error: ...` and a non-zero status, never a traceback: bad options at parse
time (exit status 2), bad data, checkpoints and numbers while running (exit status 1)."""

from __future__ import annotations

import os
import shutil
import zipfile

import pytest
import torch

from datasets.synthetic import ensure_synthetic
from experiments import engine
from experiments.dann import DANN
from experiments.finetune import FineTune
from tests.experiments.helpers import ExplodesAtCall, task_args

pytestmark = pytest.mark.usefixtures("single_thread")
DA = ["root", "-d", "synthetic", "-s", "A", "-t", "W"]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([*DA, "--bn-mode", "frozen"], "invalid choice: 'frozen'"),
        (["root", "-d", "synthetic", "-s", "A"], "pass -s and -t"),
        (["root", "-d", "cub200", "-s", "A"], "drop -s/-t"),
        (["root", "-d", "imagenet"], "unknown dataset 'imagenet'"),
        ([*DA, "-b", "many"], "invalid int value"),
        ([*DA, "-b", "0"], "argument -b/--batch-size: must be a positive integer, got 0"),
        ([*DA, "-b", "-3"], "argument -b/--batch-size: must be a positive integer, got -3"),
        ([*DA, "-i", "0"], "argument -i/--iters-per-epoch: must be a positive integer, got 0"),
        ([*DA, "--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
        ([*DA, "--print-freq", "0"], "argument -p/--print-freq: must be a positive integer, got 0"),
        ([*DA, "-j", "-1"], "argument -j/--workers: must be 0 or more, got -1"),
        ([*DA, "--bad-image-limit", "2"], "must be between 0 and 1, got 2.0"),
        ([*DA, "--device", "tpu:0:x"], "unknown device 'tpu:0:x'"),
        (["root", "-d", "synthetic", "-s", "A", "-t", "Q"], "-t: Synthetic Office-31: unknown domain 'Q'"),
        (["root", "-d", "office31", "-s", "amazonas", "-t", "W"], "-s: Office-31: unknown domain 'amazonas'"),
    ],
)
def test_command_line_errors_are_one_line_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        engine.main(FineTune, argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("error: ") and error.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_at_parse_time(capsys):
    with pytest.raises(SystemExit) as exit_info:
        engine.main(FineTune, [*DA, "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "cuda: this machine has no usable CUDA GPU" in capsys.readouterr().err


def test_adversarial_methods_need_domains(capsys):
    with pytest.raises(SystemExit):
        engine.main(DANN, ["root", "-d", "cub200"])
    assert "dann adapts between domains" in capsys.readouterr().err


def test_nan_loss_stops_cleanly_and_keeps_the_last_checkpoint(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert engine.main(ExplodesAtCall.at_call(3), task_args(synthetic_data, run_dir, "--epochs", "2")) == 1
    error = capsys.readouterr().err
    assert "loss is nan at iteration 2" in error
    assert f"{run_dir / 'checkpoint.pt'} (iteration 2), kept as it was" in error
    assert "Traceback" not in error
    assert torch.load(run_dir / "checkpoint.pt")["step"] == 2
    assert not (run_dir / "results.json").exists()


def test_missing_corrupt_or_foreign_checkpoint_is_a_clear_error(synthetic_data, tmp_path, capsys):
    assert engine.main(DANN, task_args(synthetic_data, tmp_path / "a", "--resume", str(tmp_path / "nothing"))) == 1
    assert "no checkpoint at" in capsys.readouterr().err
    foreign = tmp_path / "checkpoint.pt"
    foreign.write_bytes(os.urandom(4096))
    assert engine.main(DANN, task_args(synthetic_data, tmp_path / "b", "--resume", str(tmp_path))) == 1
    assert capsys.readouterr().err == (f"error: {foreign} is not a checkpoint of this project (not a file torch.save "
                                       f"wrote): pass the checkpoint.pt of a run directory\n")
    with zipfile.ZipFile(foreign, "w") as archive:  # torch.save's layout, but not its pickle
        archive.writestr("archive/data.pkl", os.urandom(64))
    assert engine.main(DANN, task_args(synthetic_data, tmp_path / "b", "--resume", str(tmp_path))) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: checkpoint {foreign} is corrupt or unreadable") and error.count("\n") == 1
    weights = tmp_path / "weights.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, weights)
    assert engine.main(DANN, task_args(synthetic_data, tmp_path / "c", "--resume", str(weights))) == 1
    error = capsys.readouterr().err
    assert f"error: {weights} is not a checkpoint of this engine" in error and "--pretrained" in error


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    argv = [str(tmp_path), "-d", "office31", "-s", "A", "-t", "W", "--scratch", "--log", str(tmp_path / "run")]
    assert engine.main(DANN, argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: Office-31 not found under") and "Traceback" not in error


def test_synthetic_data_over_a_foreign_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a dataset")
    assert engine.main(FineTune, task_args(tmp_path / "mine", tmp_path / "run")) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'mine'} is not empty but holds no synthetic dataset")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "not a dataset"


def test_a_bad_image_list_line_is_a_clear_error(synthetic_data, tmp_path, capsys):
    root = shutil.copytree(ensure_synthetic(synthetic_data), tmp_path / "data")
    with (root / "image_list" / "dslr.txt").open("a") as lines:
        lines.write("dslr/images/mug/frame_0001.jpg mug\n")
    assert engine.main(FineTune, task_args(root, tmp_path / "run")) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {root / 'image_list' / 'dslr.txt'}:94: expected 'relative/path label'")


def test_an_empty_image_list_is_named(synthetic_data, tmp_path, capsys):
    root = shutil.copytree(ensure_synthetic(synthetic_data), tmp_path / "data")
    (root / "image_list" / "dslr.txt").write_text("")
    assert engine.main(FineTune, task_args(root, tmp_path / "run")) == 1
    assert capsys.readouterr().err.startswith(f"error: {root / 'image_list' / 'dslr.txt'} is empty: expected one "
                                              f"'relative/path label' line per image")
