"""Signals, in real processes where they come from outside: Ctrl-C and SIGTERM to the whole process group (Slurm,
scancel, kill -- -PGID) save a checkpoint that resumes exactly, DataLoader workers included; during start-up they
stop the run with one line; during evaluation the epoch is evaluated again on resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from experiments import engine
from experiments.dann import DANN
from experiments.finetune import FineTune
from tests.experiments.helpers import (
    DANN_REFERENCE,
    ENV,
    FINETUNE_REFERENCE,
    REPO,
    assert_same_curves,
    assert_same_tensors,
    saved_model,
    scalars,
    start,
    task_args,
    wait_for_line,
)

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]  # signals to training runs


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(synthetic_data, tmp_path, dann_reference):
    argv = task_args(synthetic_data, tmp_path / "interrupted", *DANN_REFERENCE)
    process = start("dann", argv)
    wait_for_line(process, "Epoch [0][4/6]")
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    _, error = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, error
    assert f"--resume {tmp_path / 'interrupted'}" in error and "Traceback" not in error
    assert 4 <= torch.load(tmp_path / "interrupted" / "checkpoint.pt")["step"] < 12

    assert engine.main(DANN, [*argv, "--resume", str(tmp_path / "interrupted")]) == 0
    assert_same_tensors(saved_model(tmp_path / "interrupted"), saved_model(dann_reference))
    assert scalars(tmp_path / "interrupted")["train/loss"] == scalars(dann_reference)["train/loss"]
    assert_same_curves(tmp_path / "interrupted", dann_reference)


def test_sigterm_to_the_process_group_with_loader_workers_saves_a_checkpoint(synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    process = start("dann", task_args(synthetic_data, run_dir, "-i", "40", "-j", "2"))
    wait_for_line(process, "Epoch [0][3/40]")
    os.killpg(process.pid, signal.SIGTERM)  # main process and workers alike, as Slurm and scancel do
    _, error = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, error
    assert "SIGTERM: stopped at iteration" in error and "Traceback" not in error and "worker" not in error
    assert 3 <= torch.load(run_dir / "checkpoint.pt")["step"] < 40
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the workers leave with their main process: nothing is orphaned
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("processes of the run are still alive after it exited")


def test_ctrl_c_during_start_up_stops_with_one_line(synthetic_data, tmp_path):
    weights = tmp_path / "weights.pt"
    os.mkfifo(weights)  # reading --pretrained blocks until someone writes: start-up, caught in the act
    argv = [arg for arg in task_args(synthetic_data, tmp_path / "run") if arg != "--scratch"]
    process = start("finetune", [*argv, "--pretrained", str(weights)])
    deadline = time.monotonic() + 60
    while True:  # a non-blocking open for writing succeeds once the run has opened the weights for reading
        try:
            writer = os.open(weights, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    _, error = process.communicate(timeout=60)
    os.close(writer)
    assert process.returncode == 128 + signal.SIGINT
    assert [line for line in error.splitlines() if line.strip()] == [
        "SIGINT: stopped; nothing was being trained, nothing to save"]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_ctrl_c_while_torch_imports_stops_with_one_line():
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "experiments.finetune", "--help"], cwd=REPO,
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # -X importtime reports each import as it completes
        if line.rstrip().endswith("| experiments"):  # the package, first; then the method's imports: torch...
            break
    process.send_signal(signal.SIGINT)
    out, error = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT and out == ""
    assert [line for line in error.splitlines() if not line.startswith("import time:")] == [
        "SIGINT: stopped; nothing was being trained, nothing to save"]


class SignalsInEvaluation(FineTune):
    """FineTune that sends its own process SIGINT when the first evaluation starts (in-process)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.classifier.register_forward_pre_hook(self._signal_once)

    def _signal_once(self, module, _inputs) -> None:
        if not module.training and not getattr(self, "signalled", False):
            self.signalled = True
            os.kill(os.getpid(), signal.SIGINT)


def test_a_signal_during_evaluation_saves_and_the_resume_evaluates_again(synthetic_data, tmp_path,
                                                                         finetune_reference):
    argv = task_args(synthetic_data, tmp_path / "run", *FINETUNE_REFERENCE)
    assert engine.main(SignalsInEvaluation, argv) == 128 + signal.SIGINT
    state = torch.load(tmp_path / "run" / "checkpoint.pt")
    assert (state["step"], state["evaluated_epochs"]) == (4, 0)
    assert "eval/target_acc" not in scalars(tmp_path / "run")
    assert engine.main(FineTune, [*argv, "--resume", str(tmp_path / "run")]) == 0
    assert_same_curves(tmp_path / "run", finetune_reference)
