"""The GPU check's dry path: on the CPU, at toy sizes, the script runs its steps, writes JSON and one table."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # runs the script


def test_gpu_check_runs_on_the_cpu_and_summarises_what_it_measured(tmp_path):
    env = dict(os.environ, OUT_DIR=str(tmp_path), ONLY="host_bound", OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "cpu_check_host_bound.json").read_text())["results"]
    assert {mode for mode, record in results.items() if record["status"] == "ok"} >= {"eval", "tune", "deploy"}
    table = (tmp_path / "cpu_check_summary.md").read_text()
    assert "| resnet50_narrow b1/32px float32 cpu | tune |" in table
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cpu_check_host_bound.json", "cpu_check_summary.md"]
