"""A sweep script that is stopped takes its running training process with it: the run saves a checkpoint, nothing is
orphaned, and the script stops with the run's status instead of starting the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.experiments.helpers import ENV, REPO, TINY, wait_for_line

pytestmark = pytest.mark.slow  # signals to a running sweep


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize(
    "signum, whole_group",
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["kill-the-script", "ctrl-c-at-the-terminal"],
)
def test_a_stopped_sweep_stops_its_training_run(signum, whole_group, synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    sweep = tmp_path / "sweep.sh"
    sweep.write_text(
        f"source {REPO / 'scripts' / 'lib.sh'}\n"
        f"run_experiment dann {run_dir} {synthetic_data} -d synthetic -s A -t D {' '.join(TINY)} -i 40\n"
        "echo the next run would start here\n"
    )
    script = subprocess.Popen(["bash", str(sweep)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    wait_for_line(script, "Epoch [0][2/40]")
    training = int((run_dir / ".lock").read_text())  # the run directory's owner: the training process
    if whole_group:
        os.killpg(script.pid, signum)  # the terminal signals its foreground group: the script's
    else:
        os.kill(script.pid, signum)
    output, error = script.communicate(timeout=120)
    assert script.returncode == 128 + signum, error
    assert "the next run would start here" not in output
    assert f"{signal.Signals(signum).name}: stopped at iteration" in error and "Traceback" not in error
    assert (run_dir / "checkpoint.pt").is_file()
    deadline = time.monotonic() + 10
    while not gone(training):
        assert time.monotonic() < deadline, "the training process outlived its sweep"
        time.sleep(0.1)
