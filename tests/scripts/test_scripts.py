"""The sweep scripts: the commands they would run (DRY_RUN=1), skipping and resuming, and the demo end to end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # runs the scripts


def run_script(name: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name)], env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=600)


def commands(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("python -m experiments.")]


@pytest.mark.parametrize(
    "script, runs, expected",
    [
        ("office31.sh", 6 * 3 * 3, "-d office31 -s A -t W --bn-mode train --seed 0 --epochs 5 -i 500 -a resnet50"),
        ("officehome.sh", 12 * 3 * 3, "-d officehome -s Rw -t Pr --bn-mode tune --seed 0 --epochs 30 -i 1000"),
        ("visda2017.sh", 3 * 3, "-s Synthetic -t Real --bn-mode eval --seed 0 --epochs 30 -i 1000 -a resnet101 "
                                "--train-resizing cen.crop"),
        ("finetune.sh", 3 * 3, "-d cars --bn-mode tune --seed 0 -a resnet50 -b 48 --lr 0.01 --wd 5e-4 "
                               "--lr-decay-epochs 12 --lr-gamma 0.1 --epochs 20 -i 500 --scale 0.2 1"),
        ("digits.sh", 2 + 2 * 3 * 3, "experiments.cdan data/digits -d digits -a dtn --resize-size 28 "
                                     "--train-resizing res. --val-resizing res. --no-hflip -j 2 -p 100 -s U -t M "
                                     "--pretrained "),
        ("demo.sh", 2 + 2 * 3 * 3, "experiments.dann data/digits -d digits -a dtn"),
        ("detection.sh", 2 + 2 * 2, "experiments.detection data/scenes -d scenes -b 4 --fpn-channels 64 -j 0 -p 20 "
                                    "-s U --detector fasterrcnn -a resnet34 --pretrained "),
    ],
    ids=["office31", "officehome", "visda2017", "finetune", "digits", "demo", "detection"],
)
def test_dry_run_prints_every_run_then_the_report(script, runs, expected, tmp_path):
    result = run_script(script, DRY_RUN="1", LOG=str(tmp_path))
    assert result.returncode == 0, result.stderr
    printed = commands(result.stdout)
    assert len(printed) == runs + 1
    assert any(expected in command for command in printed)
    assert printed[-1].startswith("python -m experiments.report")


def test_sweeps_skip_finished_runs_resume_interrupted_ones_and_take_overrides(tmp_path):
    finished, interrupted = tmp_path / "A2W/dann/tune/seed1", tmp_path / "D2W/dann/tune/seed0"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")
    interrupted.mkdir(parents=True)
    (interrupted / "checkpoint.pt").write_bytes(b"")
    result = run_script("office31.sh", DRY_RUN="1", LOG=str(tmp_path), ROOT="/data/o31", METHODS="dann",
                        MODES="tune", SEEDS="0 1", EPOCHS="3", ITERS="7", DEVICE="cuda", ARGS="-j 8 -b 16")
    assert result.returncode == 0, result.stderr
    assert f"finished already, skipped: {finished}" in result.stdout
    printed = commands(result.stdout)[:-1]
    assert len(printed) == 6 * 2 - 1
    assert all(c.startswith("python -m experiments.dann /data/o31 ") and "--epochs 3 -i 7" in c and
               "--device cuda -j 8 -b 16" in c for c in printed)
    assert [c for c in printed if "--resume" in c] == [
        f"python -m experiments.dann /data/o31 -d office31 -s D -t W --bn-mode tune --seed 0 --epochs 3 -i 7 "
        f"-a resnet50 --device cuda -j 8 -b 16 --log {interrupted} --resume {interrupted}"
    ]


@pytest.mark.parametrize(("script", "length", "batch"), [("digits.sh", "--epochs 10 -i 500", 32),
                                                         ("demo.sh", "--epochs 8 -i 20", 16)])
def test_digits_sweep_pretrains_on_each_source_then_benchmarks_the_same_backbone(script, length, batch, tmp_path):
    result = run_script(script, DRY_RUN="1", LOG=str(tmp_path))
    assert result.returncode == 0, result.stderr
    printed = commands(result.stdout)
    for source, target in (("M", "U"), ("U", "M")):
        pretrain = f"--log {tmp_path}/pretrain/{source}"
        assert sum(pretrain in command and f"-s {source} -t {target} --scratch" in command for command in printed) == 1
        runs = [c for c in printed if f"--pretrained {tmp_path}/pretrain/{source}/checkpoint.pt" in c]
        assert len(runs) == 9 and all(f"-s {source} -t {target}" in c and length in c for c in runs)
        assert all(f"-b {batch} --lr 0.01" in c for c in runs)
    benchmark = [line for line in result.stdout.splitlines() if line.startswith("python -m benchmarks")]
    assert benchmark == [f"python -m benchmarks --model dtn --batch-size {2 * batch} --resolution 28 --modes train "
                         f"eval tune deploy --reps 30 --warmup 3 --json {tmp_path}/runs/benchmark.json"]
    assert printed[-1] == f"python -m experiments.report {tmp_path}/runs"


def test_demo_runs_and_reports(tmp_path):
    tiny = {"LOG": str(tmp_path / "logs"), "TASKS": "M:U", "METHODS": "dann", "MODES": "eval tune",
            "PRETRAIN_ITERS": "2", "EPOCHS": "2", "ITERS": "2", "BATCH": "4", "BENCH_REPS": "2", "WORKERS": "0",
            "ARGS": "--device cpu"}
    result = run_script("demo.sh", **tiny)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("| M->U | dann |")]
    assert [row.split(" | ")[2] for row in table] == ["eval", "tune"]
    assert all(row.split(" | ")[3] == "1" and row.split(" | ")[-1].strip(" |") != "-" for row in table)
    text = (tmp_path / "logs/runs/report.md").read_text()
    assert "## digits · dtn · cpu (2 finished runs)" in text
    assert "### Interleaved benchmark: dtn, batch 8, 28 px" in text
    assert (tmp_path / "logs/runs/accuracy_digits_dtn_M2U_dann.png").is_file()
    again = run_script("demo.sh", **tiny, DRY_RUN="1")
    assert again.stdout.count("finished already, skipped") == 1 + 2 + 1


def test_parallel_sweep_stops_at_the_first_failed_run(tmp_path):
    result = run_script("digits.sh", LOG=str(tmp_path), JOBS="2", ARGS="--no-such-option")
    assert result.returncode != 0
    assert "[pretrain M] error: unrecognized arguments: --no-such-option" in result.stdout
    assert not (tmp_path / "runs").exists()
