"""DDP: two processes under torchrun (gloo) train exactly what one process does with the global batch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiments import engine
from experiments.finetune import FineTune
from tests.experiments.helpers import ENV, REPO, assert_same_tensors, saved_model, scalars, task_args

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]  # torchrun


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
