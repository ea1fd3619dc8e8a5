"""What needs real processes: Ctrl-C during training, and 2-process DDP (gloo) against one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import engine
from experiments.dann import DANN
from experiments.finetune import FineTune
from tests.experiments.helpers import assert_same_tensors, saved_model, scalars, task_args

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")

pytestmark = pytest.mark.usefixtures("single_thread")


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(synthetic_data, tmp_path):
    argv = task_args(synthetic_data, tmp_path / "interrupted", "-i", "40")
    process = subprocess.Popen([sys.executable, "-m", "experiments.dann", *argv], cwd=REPO, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("Epoch [0][3/40]"):
            process.send_signal(signal.SIGINT)
            break
    _, error = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, error
    assert f"--resume {tmp_path / 'interrupted'}" in error and "Traceback" not in error
    assert 3 <= torch.load(tmp_path / "interrupted" / "checkpoint.pt")["step"] < 40

    assert engine.main(DANN, [*argv, "--resume", str(tmp_path / "interrupted")]) == 0
    assert engine.main(DANN, task_args(synthetic_data, tmp_path / "uninterrupted", "-i", "40")) == 0
    assert_same_tensors(saved_model(tmp_path / "interrupted"), saved_model(tmp_path / "uninterrupted"))
    assert scalars(tmp_path / "interrupted")["train/loss"] == scalars(tmp_path / "uninterrupted")["train/loss"]


def test_two_process_ddp_matches_one_process_with_the_global_batch(synthetic_data, tmp_path):
    """Tune mode freezes the backbone's BN and ERM has no other BN, so per-rank batches change nothing."""
    options = ["--bn-mode", "tune", "-i", "3", "--epochs", "2"]
    argv = task_args(synthetic_data, tmp_path / "ddp", *options, "-b", "2", log_option="--log-dir")
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "experiments.finetune", *argv],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr
    assert engine.main(FineTune, task_args(synthetic_data, tmp_path / "single", *options, "-b", "4")) == 0
    ddp_log, single_log = scalars(tmp_path / "ddp"), scalars(tmp_path / "single")
    for tag in ("train/loss", "train/source_acc", "eval/target_acc"):
        assert [step for step, _ in ddp_log[tag]] == [step for step, _ in single_log[tag]]
        assert [v for _, v in ddp_log[tag]] == pytest.approx([v for _, v in single_log[tag]], rel=1e-4, abs=1e-5)
    assert_same_tensors(saved_model(tmp_path / "ddp"), saved_model(tmp_path / "single"), atol=1e-5)
