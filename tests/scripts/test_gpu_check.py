"""The GPU check's dry path: on the CPU, at toy sizes, the script runs its steps and packs JSON, environment and
one table into a single archive; a rerun copies the steps an earlier run completed instead of measuring them."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # runs the script


def gpu_check(out: Path, **env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT_DIR=str(out), ONLY="host_bound", OMP_NUM_THREADS="1", **env)
    return subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def unpack(out: Path) -> Path:
    assert sorted(path.name for path in out.iterdir()) == ["gpu_check.tar.gz"]  # one file comes back
    with tarfile.open(out / "gpu_check.tar.gz") as archive:
        archive.extractall(out, filter="data")
    return out / "gpu_check"


def test_gpu_check_runs_on_the_cpu_packs_what_it_measured_and_a_rerun_skips_it(tmp_path):
    done = gpu_check(tmp_path / "first")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first = unpack(tmp_path / "first")
    document = json.loads((first / "host_bound.json").read_text())
    assert document["complete"] is True and "numerics" in document["meta"]
    assert {mode for mode, record in document["results"].items() if record["status"] == "ok"} >= {"eval", "tune"}
    assert "| resnet50_narrow b1/32px float32 cpu | tune |" in (first / "summary.md").read_text()
    assert "torch" in (first / "environment.txt").read_text()
    again = gpu_check(tmp_path / "second", DONE=str(first))
    assert again.returncode == 0 and "host_bound: complete in" in again.stdout
    assert json.loads((unpack(tmp_path / "second") / "host_bound.json").read_text()) == document
