"""The run directory: owned by one process at a time (a lock that dies with its process), written only through
unique temporary files that never outlive a failure, a full disk said as such, an unusable one found first."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import atomic, checkpoint, engine, rundir
from experiments.dann import DANN
from experiments.finetune import FineTune
from tests.experiments.helpers import DANN_REFERENCE, REPO, assert_same_curves, scalars, start, task_args, wait_for_line

pytestmark = pytest.mark.usefixtures("single_thread")


def temporaries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.tmp"))


def test_a_run_directory_in_use_is_refused_at_once(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with rundir.owned(run_dir):
        assert engine.main(FineTune, task_args(synthetic_data, run_dir)) == 1
    assert f"error: {run_dir} is in use by process {os.getpid()}" in capsys.readouterr().err
    assert sorted(path.name for path in run_dir.iterdir()) == [rundir.LOCK]  # nothing written by the refused run


@pytest.mark.slow
def test_a_second_process_is_refused_and_the_lock_dies_with_its_owner(synthetic_data, tmp_path, capsys,
                                                                      dann_reference):
    run_dir = tmp_path / "run"
    first = start("dann", task_args(synthetic_data, run_dir, "-i", "40", "--seed", "1"))
    wait_for_line(first, "Epoch [0][1/40]")
    assert engine.main(DANN, task_args(synthetic_data, run_dir)) == 1
    assert f"{run_dir} is in use by process {first.pid}" in capsys.readouterr().err
    os.killpg(first.pid, signal.SIGKILL)  # killed before its first checkpoint; what it logged must go
    first.communicate()
    (run_dir / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # a save it did not finish
    assert engine.main(DANN, task_args(synthetic_data, run_dir, *DANN_REFERENCE)) == 0
    assert temporaries(run_dir) == []
    assert_same_curves(run_dir, dann_reference)


def test_atomic_writes_leave_nothing_behind_when_they_fail(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.mkdir()  # the rename into place fails
    with pytest.raises(IsADirectoryError):
        atomic.write_atomically(target, b"{}")
    assert temporaries(tmp_path) == [] and target.is_dir()

    def interrupted(_descriptor, _data):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomically(tmp_path / "config.json", b"{}")
    assert temporaries(tmp_path) == [] and not (tmp_path / "config.json").exists()


def test_atomic_writes_get_the_permissions_of_an_ordinary_write(tmp_path):
    """mkstemp makes files readable by their owner alone; a report on a shared machine must not be."""
    (tmp_path / "plain.md").write_bytes(b"x")
    atomic.write_atomically(tmp_path / "report.md", b"x")
    assert (tmp_path / "report.md").stat().st_mode == (tmp_path / "plain.md").stat().st_mode


@pytest.mark.slow
def test_a_full_disk_says_how_much_was_needed_and_keeps_the_last_checkpoint(synthetic_data, tmp_path, monkeypatch,
                                                                           capsys):
    run_dir = tmp_path / "run"
    real_write = os.write

    def disk_full_after_first_checkpoint(descriptor, data):  # what write(2) does on a full disk
        name = Path(os.readlink(f"/proc/self/fd/{descriptor}")).name
        if name.startswith(f".{checkpoint.FILENAME}.") and (run_dir / checkpoint.FILENAME).exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", disk_full_after_first_checkpoint)
    argv = task_args(synthetic_data, run_dir, "--epochs", "2")
    assert engine.main(FineTune, argv) == 1
    error = capsys.readouterr().err
    free = shutil.disk_usage(run_dir).free / 2**20
    assert f"error: no space left on device writing {run_dir / checkpoint.FILENAME}: needed about " in error
    needed = float(error.split("needed about ")[1].split(" MiB")[0])
    assert needed == pytest.approx((run_dir / checkpoint.FILENAME).stat().st_size / 2**20, rel=0.05)
    assert float(error.split("free ")[1].split(" MiB")[0]) == pytest.approx(free, rel=0.05)
    assert temporaries(run_dir) == [] and not (run_dir / "results.json").exists()
    assert torch.load(run_dir / checkpoint.FILENAME)["step"] == 2  # the last good one, intact
    monkeypatch.undo()
    assert engine.main(FineTune, [*argv, "--resume", str(run_dir)]) == 0


@pytest.mark.slow
def test_a_real_full_disk_in_a_small_tmpfs(synthetic_data, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no unprivileged mount namespaces here to mount a small tmpfs in")
    argv = " ".join(task_args(synthetic_data, mount / "run"))
    script = (f"mount -t tmpfs -o size=40m tmpfs {mount} && {sys.executable} -m experiments.finetune {argv}; "
              f"echo status $?; ls -A {mount / 'run'}")
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"), timeout=120)
    assert "status 1" in result.stdout, result.stderr
    message = f"error: no space left on device writing {mount / 'run' / checkpoint.FILENAME}: needed about "
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert ".tmp" not in result.stdout and "checkpoint.pt" not in result.stdout  # the listing of the run directory


def test_an_unusable_log_directory_is_found_before_data_and_model_are_built(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    data = tmp_path / "data"  # the synthetic data would be generated here first if the run got that far
    assert engine.main(FineTune, task_args(data, tmp_path / "file" / "run")) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot write the run directory {tmp_path / 'file' / 'run'}")
    assert "Traceback" not in error and not data.exists()


def test_a_fresh_run_leaves_foreign_tensorboard_files_alone(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert engine.main(FineTune, task_args(synthetic_data, tmp_path / "other")) == 0
    shutil.copytree(tmp_path / "other", run_dir, ignore=shutil.ignore_patterns("config.json", "checkpoint.pt",
                                                                                "results.json"))
    capsys.readouterr()
    assert engine.main(FineTune, task_args(synthetic_data, run_dir)) == 1
    assert "holds TensorBoard event files but no config.json" in capsys.readouterr().err
    assert scalars(run_dir) == scalars(tmp_path / "other")
