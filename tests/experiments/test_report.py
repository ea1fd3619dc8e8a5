"""The sweep report reads real TensorBoard event files and its table repeats exactly what was logged."""

import json
import statistics

import pytest
from matplotlib.image import imread
from torch.utils.tensorboard import SummaryWriter

from experiments import report

TASKS = ("A2W", "W2A")
MODES = ("train", "eval", "tune")
SEEDS = (0, 1)
TIMES = [0.9, 0.50, 0.40, 0.45]  # first window is warm-up; the median of the rest is 0.45


def logged(task: str, mode: str, seed: int) -> dict[str, float]:
    """Distinct, easily checked values for every run of the fake sweep."""
    offset = TASKS.index(task) * 10 + MODES.index(mode) + seed * 0.5
    rank = MODES.index(mode)
    return {"acc": 80 + offset, "peak": 1000 * (3 - rank) + seed, "kept": 500.0 - 100 * rank}


def write_run(root, task: str, mode: str, seed: int, skip: tuple[str, ...] = ()) -> None:
    """Log one run the way the training engine does, leaving out the tags named in `skip`."""
    values = logged(task, mode, seed)
    config = {
        "method": "dann",
        "dataset": "office31",
        "task": task,
        "arch": "resnet50",
        "bn_mode": mode,
        "batch_size": 32,
        "seed": seed,
        "device": "cpu",
    }
    writer = SummaryWriter(root / f"{task}_{mode}_s{seed}")
    writer.add_text("config", json.dumps(config))
    scale = 1 + MODES.index(mode)
    for window, seconds in enumerate(TIMES):
        if "time/iter_s" not in skip:
            writer.add_scalar("time/iter_s", seconds * scale, window * 100)
        if "memory/peak_mib" not in skip:
            writer.add_scalar("memory/peak_mib", values["peak"] - 50 * (window % 2), window * 100)
    if "memory/kept_for_backward_mib" not in skip:
        writer.add_scalar("memory/kept_for_backward_mib", values["kept"], 0)
    for epoch in range(3):
        writer.add_scalar("eval/target_acc", values["acc"] - 2 + epoch, epoch)
    if "eval/best_target_acc" not in skip:
        writer.add_scalar("eval/best_target_acc", values["acc"], 3)
    writer.close()


@pytest.fixture
def sweep(tmp_path):
    for task in TASKS:
        for mode in MODES:
            for seed in SEEDS:
                write_run(tmp_path / "sweep", task, mode, seed)
    return tmp_path / "sweep"


def test_rows_equal_logged_values(sweep):
    rows = report.summarize(report.load_runs(sweep))
    assert [(row.group[1], row.mode) for row in rows] == [(task, mode) for task in TASKS for mode in MODES]
    for row in rows:
        task, mode = row.group[1], row.mode
        per_seed = [logged(task, mode, seed) for seed in SEEDS]
        accs = [v["acc"] for v in per_seed]
        assert row.runs == 2
        assert row.metrics["accuracy"].mean == pytest.approx(statistics.fmean(accs))
        assert row.metrics["accuracy"].std == pytest.approx(statistics.stdev(accs))
        assert row.metrics["peak_mib"].mean == pytest.approx(statistics.fmean(v["peak"] for v in per_seed))
        assert row.metrics["kept_mib"].mean == pytest.approx(per_seed[0]["kept"])
        assert row.metrics["iter_s"].mean == pytest.approx(0.45 * (1 + MODES.index(mode)))
        train_peak = statistics.fmean(logged(task, "train", seed)["peak"] for seed in SEEDS)
        peak = row.metrics["peak_mib"].mean
        assert row.vs_train["peak_mib"] == pytest.approx(100 * (peak / train_peak - 1))
        assert row.vs_eval["iter_s"] == pytest.approx(100 * ((1 + MODES.index(mode)) / 2 - 1))
        assert row.vs_train["accuracy"] == pytest.approx(MODES.index(mode))


def test_cli_writes_report_and_valid_pngs(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main([str(sweep), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    tune_row = next(line for line in text.splitlines() if "| W2A |" in line and "| tune |" in line)
    cells = [cell.strip() for cell in tune_row.strip("|").split("|")]
    assert cells[6] == "92.25 ± 0.35 (+2.0 pp / +1.0 pp)"
    assert cells[7] == "1000.5 ± 0.7 (-66.7% / -50.0%)"
    assert cells[8] == "300.0 ± 0.0 (-40.0% / -25.0%)"
    assert cells[9] == "1.3500 ± 0.0000 (+200.0% / +50.0%)"
    for name in ("memory_time.png", "accuracy_curves.png"):
        image = imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
    printed = capsys.readouterr().out
    assert tune_row in printed and str(out / "report.md") in printed


def test_missing_tags_show_dash_and_warn(tmp_path):
    write_run(tmp_path, "A2W", "train", 0)
    write_run(tmp_path, "A2W", "tune", 0, skip=("memory/peak_mib", "memory/kept_for_backward_mib"))
    missing = "A2W_tune_s0: missing tags memory/peak_mib, memory/kept_for_backward_mib"
    with pytest.warns(UserWarning, match=missing):
        runs = report.load_runs(tmp_path)
    rows = report.summarize(runs)
    tune = rows[1]
    assert tune.metrics["peak_mib"] is None and tune.vs_train["peak_mib"] is None
    line = report.to_markdown(rows).splitlines()[3]
    assert [cell.strip() for cell in line.strip("|").split("|")][7:9] == ["-", "-"]
    assert report.plot(runs, rows, tmp_path / "plots")[0].is_file()


@pytest.mark.parametrize("make", [lambda p: p / "absent", lambda p: p])
def test_empty_or_missing_logdir_fails_clearly(tmp_path, capsys, make):
    logdir = make(tmp_path)
    with pytest.raises(FileNotFoundError):
        report.load_runs(logdir)
    assert report.main([str(logdir)]) == 2
    assert "report: error:" in capsys.readouterr().err
