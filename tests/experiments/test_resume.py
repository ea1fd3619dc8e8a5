"""Resuming: a resumed run ends exactly like an uninterrupted one, model and TensorBoard curves alike (each tag's
steps once and in order, the straddling window's mean included), whatever the interruption; what may not be
resumed is refused."""

from __future__ import annotations

import signal

import pytest
import torch

from experiments import checkpoint, engine
from experiments.cdan import CDAN
from experiments.dann import DANN
from experiments.finetune import FineTune
from tests.experiments.helpers import (
    DANN_REFERENCE,
    FINETUNE_REFERENCE,
    ExplodesAtCall,
    SignalsItselfAtCall,
    assert_same_curves,
    assert_same_tensors,
    saved_model,
    scalars,
    task_args,
)

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]  # interrupted and resumed training runs


def test_resume_continues_exactly_like_an_uninterrupted_run(synthetic_data, tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    # Worker processes must not matter either: each sample's augmentation is seeded by its stream position.
    assert engine.main(CDAN, task_args(synthetic_data, full, "--epochs", "2", "-j", "2")) == 0
    assert engine.main(CDAN, task_args(synthetic_data, part, "--epochs", "1")) == 0
    assert engine.main(CDAN, task_args(synthetic_data, part, "--epochs", "2", "--resume", str(part))) == 0
    assert "resuming at iteration 2" in capsys.readouterr().out

    full_state, part_state = (torch.load(run / "checkpoint.pt") for run in (full, part))
    assert_same_tensors(full_state["model"], part_state["model"])
    assert full_state["model"]["adversary.grl._extra_state"] == {"step": 4}
    assert full_state["scheduler"] == part_state["scheduler"]
    assert full_state["scores"] == part_state["scores"]
    full_log, part_log = scalars(full), scalars(part)
    assert part_log["train/loss"] == full_log["train/loss"]  # steps 0..3, none twice
    assert [epoch for epoch, _ in part_log["eval/target_acc"]] == [0, 1]
    assert_same_curves(part, full)

    assert engine.main(CDAN, task_args(synthetic_data, part, "--epochs", "2", "--phase", "test")) == 0
    accuracy = full_state["scores"]["target_acc"]
    assert f"A->D: target accuracy {accuracy:.2f}%" in capsys.readouterr().out


def test_a_window_that_straddles_an_interruption_logs_what_an_uninterrupted_run_logs(synthetic_data, tmp_path,
                                                                                     dann_reference):
    part = task_args(synthetic_data, tmp_path / "part", *DANN_REFERENCE)  # windows end at iterations 3, 7, 11
    assert engine.main(SignalsItselfAtCall.at_call(5), part) == 128 + signal.SIGINT
    assert torch.load(tmp_path / "part" / "checkpoint.pt")["step"] == 5  # inside the window of iterations 4-7
    assert engine.main(DANN, [*part, "--resume", str(tmp_path / "part")]) == 0
    assert_same_curves(tmp_path / "part", dann_reference)
    assert_same_tensors(saved_model(tmp_path / "part"), saved_model(dann_reference))


def test_a_run_stopped_before_its_first_checkpoint_starts_over_cleanly(synthetic_data, tmp_path, capsys,
                                                                      finetune_reference):
    argv = task_args(synthetic_data, tmp_path / "run", *FINETUNE_REFERENCE)
    assert engine.main(ExplodesAtCall.at_call(3), argv) == 1  # stopped at iteration 2, nothing saved; events of 0 and 1
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert engine.main(FineTune, argv) == 0
    assert "starting over" in capsys.readouterr().out
    assert_same_curves(tmp_path / "run", finetune_reference)


def test_a_crash_between_evaluation_and_checkpoint_does_not_log_the_epoch_twice(synthetic_data, tmp_path,
                                                                                monkeypatch, finetune_reference):
    real_save, saves = checkpoint.save, []

    def save_then_crash(state, path):
        saves.append(state["step"])
        if len(saves) == 2:  # the checkpoint of epoch 1, after its evaluation was logged
            raise RuntimeError("power cut")
        real_save(state, path)

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    argv = task_args(synthetic_data, tmp_path / "run", *FINETUNE_REFERENCE)
    with pytest.raises(RuntimeError, match="power cut"):
        engine.main(FineTune, argv)
    monkeypatch.undo()
    assert [epoch for epoch, _ in scalars(tmp_path / "run")["eval/target_acc"]] == [0, 1]
    assert engine.main(FineTune, [*argv, "--resume", str(tmp_path / "run")]) == 0
    assert_same_curves(tmp_path / "run", finetune_reference)


def test_resuming_a_finished_run_changes_nothing(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = task_args(synthetic_data, run_dir)
    assert engine.main(FineTune, argv) == 0
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.name != "log.txt"}
    assert engine.main(FineTune, [*argv, "--resume", str(run_dir)]) == 0
    assert "finished already" in capsys.readouterr().out
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.name != "log.txt"} == before


def test_resuming_another_experiment_or_reusing_a_run_directory_is_refused(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert engine.main(FineTune, task_args(synthetic_data, run_dir)) == 0
    capsys.readouterr()
    assert engine.main(FineTune, task_args(synthetic_data, run_dir)) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert engine.main(FineTune, task_args(synthetic_data, tmp_path / "other", "--bn-mode", "eval",
                                           "--resume", str(run_dir))) == 1
    assert "different experiment: bn_mode: 'train' -> 'eval'" in capsys.readouterr().err
    assert engine.main(FineTune, task_args(synthetic_data, tmp_path / "other", "--resume", str(run_dir),
                                           "--epochs", "1", "-i", "1")) == 1
    assert "different experiment: iters_per_epoch: 2 -> 1" in capsys.readouterr().err
