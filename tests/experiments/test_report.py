"""The sweep report reads run directories as the engine leaves them (config.json, TensorBoard events, results.json
once finished) and its tables repeat exactly what was logged."""

import json
import statistics

import pytest
from matplotlib.image import imread
from torch.utils.tensorboard import SummaryWriter

from experiments.report import figures, sweep, table
from experiments.report.__main__ import main

TASKS = ("A->W", "W->A")
MODES = ("train", "eval", "tune")
RANK = {mode: rank for rank, mode in enumerate((*MODES, "deploy"))}
SEEDS = (0, 1)
TIMES = [0.9, 0.50, 0.40, 0.45]  # first window is warm-up; the median of the rest is 0.45
EPOCHS, ITERS_PER_EPOCH = 3, 100


def logged(task: str, mode: str, seed: int) -> dict[str, float]:
    """Distinct, easily checked values for every run of the fake sweep."""
    offset = TASKS.index(task) * 10 + RANK[mode] + seed * 0.5
    rank = RANK[mode]
    return {"acc": 80 + offset, "peak": 1000 * (3 - rank) + seed, "kept": 500.0 - 100 * rank,
            "step_peak": 800.0 - 100 * rank + seed}


def config(task: str, mode: str, seed: int, device: str = "cpu") -> dict:
    return {"method": "dann", "dataset": "office31", "task": task, "arch": "resnet50", "bn_mode": mode,
            "seed": seed, "batch_size": 32, "world_size": 1, "epochs": EPOCHS, "iters_per_epoch": ITERS_PER_EPOCH,
            "lr": 0.01, "device": device, "torch": "2.14.1"}


def write_run(root, task: str, mode: str, seed: int, skip: tuple[str, ...] = (), finished: bool = True,
              device: str = "cpu", name: str | None = None, curve: tuple[float, ...] | None = None):
    """Leave a run directory the way the training engine does, without the tags named in `skip`."""
    run_dir = root / (name or f"{task.replace('->', '2')}_{mode}_s{seed}")
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config(task, mode, seed, device)))
    values = logged(task, mode, seed)
    writer = SummaryWriter(run_dir)
    scale = 1 + RANK[mode]
    for window, seconds in enumerate(TIMES):
        if "time/iter_s" not in skip:
            writer.add_scalar("time/iter_s", seconds * scale, window * 100)
        if "memory/peak_mib" not in skip:
            writer.add_scalar("memory/peak_mib", values["peak"] - 50 * (window % 2), window * 100)
    for tag, key in (("memory/kept_for_backward_mib", "kept"), ("memory/step_peak_mib", "step_peak")):
        if tag not in skip:
            writer.add_scalar(tag, values[key], 0)
    for epoch, accuracy in enumerate(curve or [values["acc"] - 2 + epoch for epoch in range(EPOCHS)]):
        writer.add_scalar("eval/target_acc", accuracy, epoch)
    if finished:
        writer.add_scalar("eval/best_target_acc", values["acc"], EPOCHS - 1)
    writer.close()
    if finished:
        (run_dir / "results.json").write_text(json.dumps({"best_target_acc": values["acc"]}))
    return run_dir


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.fixture
def sweep_dir(tmp_path):
    for task in TASKS:
        for mode in MODES:
            for seed in SEEDS:
                write_run(tmp_path / "sweep", task, mode, seed)
    return tmp_path / "sweep"


def test_rows_equal_logged_values(sweep_dir):
    rows = table.summarize(sweep.load_runs(sweep_dir))
    assert [(row.group[0], row.mode) for row in rows] == [(task, mode) for task in TASKS for mode in MODES]
    for row in rows:
        (task, method), mode = row.group, row.mode
        assert method == "dann" and row.section == ("office31", "resnet50", "cpu")
        per_seed = [logged(task, mode, seed) for seed in SEEDS]
        accs = [v["acc"] for v in per_seed]
        assert row.runs == 2
        assert row.metrics["accuracy"].mean == pytest.approx(statistics.fmean(accs))
        assert row.metrics["accuracy"].std == pytest.approx(statistics.stdev(accs))
        assert row.metrics["peak_mib"].mean == pytest.approx(statistics.fmean(v["peak"] for v in per_seed))
        assert row.metrics["kept_mib"].mean == pytest.approx(per_seed[0]["kept"])
        assert row.metrics["step_peak_mib"].mean == pytest.approx(statistics.fmean(v["step_peak"] for v in per_seed))
        assert row.metrics["iter_s"].mean == pytest.approx(0.45 * (1 + MODES.index(mode)))
        assert row.metrics["bench_ms"] is None
        train_peak = statistics.fmean(logged(task, "train", seed)["peak"] for seed in SEEDS)
        peak = row.metrics["peak_mib"].mean
        assert row.vs_train["peak_mib"] == pytest.approx(100 * (peak / train_peak - 1))
        assert row.vs_eval["iter_s"] == pytest.approx(100 * ((1 + MODES.index(mode)) / 2 - 1))
        assert row.vs_train["accuracy"] == pytest.approx(MODES.index(mode))


def test_cli_writes_the_table_and_one_panel_pngs(sweep_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(sweep_dir), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    lines = text.splitlines()
    header = cells(next(line for line in lines if line.startswith("| task |")))
    assert header[4:] == ["target acc %", "kept for backward MiB", "step peak MiB (probe step, profiler)",
                          "peak RSS MiB", "s/iter (separate runs)", "ms/step (interleaved benchmark)"]
    assert "## office31 · resnet50 · cpu (12 finished runs)" in lines
    tune_row = cells(next(line for line in lines if "| W->A | dann | tune |" in line))
    assert tune_row[3:] == ["2", "92.25 ± 0.35 (+2.0 pp / +1.0 pp)", "300.00 ± 0.00 (-40.0% / -25.0%)",
                            "600.50 ± 0.71 (-25.0% / -14.3%)", "1000 ± 1 (-66.7% / -50.0%)",
                            "1.3500 ± 0.0000 (+200.0% / +50.0%)", "-"]
    pngs = sorted(path.name for path in out.glob("*.png"))
    assert pngs == sorted(["accuracy_office31_resnet50_A2W_dann.png", "accuracy_office31_resnet50_W2A_dann.png",
                           "kept_for_backward_office31_resnet50_cpu.png", "step_peak_office31_resnet50_cpu.png",
                           "peak_memory_office31_resnet50_cpu.png", "time_per_iter_office31_resnet50_cpu.png"])
    for name in pngs:
        image = imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert f"![{name.removesuffix('.png')}]({name})" in text
    assert not list(out.glob(".*"))  # no temporary files left
    printed = capsys.readouterr().out
    assert "| W->A | dann | tune | 2 |" in printed and str(out / "report.md") in printed


def test_run_in_progress_is_listed_and_never_averaged(tmp_path):
    write_run(tmp_path, "A->W", "tune", 0)
    write_run(tmp_path, "A->W", "tune", 1, finished=False)
    runs = sweep.load_runs(tmp_path)
    (row,) = table.summarize(runs)
    assert row.runs == 1 and row.metrics["accuracy"].mean == logged("A->W", "tune", 0)["acc"]
    assert row.metrics["accuracy"].std == 0.0
    text = table.to_markdown(runs, [row])
    assert "In progress (no results.json yet; not in the averages):" in text
    assert "- `A2W_tune_s1`: A->W dann tune seed 1, last logged at iteration 300" in text
    assert "(1 finished runs)" in text


def test_tune_and_deploy_curves_are_compared_with_evals_of_the_same_seed(tmp_path):
    write_run(tmp_path, "A->W", "eval", 0, curve=(50.0, 60.0, 70.0))
    write_run(tmp_path, "A->W", "tune", 0, curve=(50.0, 60.0, 70.25))
    write_run(tmp_path, "A->W", "deploy", 0, curve=(50.0, 55.0, 71.0))
    write_run(tmp_path, "A->W", "tune", 1, curve=(50.0, 60.0, 70.0))  # no Eval run of seed 1
    write_run(tmp_path, "W->A", "tune", 0, curve=(50.0, 60.0, 70.0), finished=False)
    write_run(tmp_path, "W->A", "eval", 0, curve=(50.0, 60.0, 70.0))
    runs = sweep.load_runs(tmp_path)
    assert table.agreement_with_eval(runs) == [
        "- A->W dann seed 0, tune: identical at 2 of 3 evaluations, largest difference 0.25 pp",
        "- A->W dann seed 0, deploy: identical at 1 of 3 evaluations, largest difference 5.00 pp",
    ]
    assert "Target accuracy against Eval's, same seed" in table.to_markdown(runs, table.summarize(runs))


def test_section_of_only_runs_in_progress_is_still_listed(tmp_path):
    write_run(tmp_path, "A->W", "eval", 0, finished=False)
    runs = sweep.load_runs(tmp_path)
    assert table.summarize(runs) == []
    text = table.to_markdown(runs, [])
    assert "(0 finished runs)" in text and "`A2W_eval_s0`" in text
    assert figures.plot(runs, [], tmp_path / "plots")[0].name == "accuracy_office31_resnet50_A2W_dann.png"


@pytest.mark.parametrize(
    "content, why",
    [("{not json", "config.json is not JSON"), ("[1, 2]", "config.json is not a JSON object"),
     (None, "no config.json")],
    ids=["not-json", "not-an-object", "missing"],
)
def test_unusable_config_skips_the_run_with_a_warning(tmp_path, capsys, content, why):
    write_run(tmp_path, "A->W", "eval", 0)
    bad = write_run(tmp_path, "A->W", "tune", 0)
    if content is None:
        (bad / "config.json").unlink()
    else:
        (bad / "config.json").write_text(content)
    with pytest.warns(UserWarning, match=f"run A2W_tune_s0: .*{why}.*: skipped"):
        runs = sweep.load_runs(tmp_path)
    assert [run.mode for run in runs] == ["eval"]
    assert main([str(tmp_path)]) == 0
    printed = capsys.readouterr()
    assert "| A->W | dann | eval | 1 |" in printed.out
    assert printed.err.startswith("warning: run A2W_tune_s0: ") and printed.err.count("\n") == 1


def test_missing_tags_show_dash_and_warn(tmp_path):
    write_run(tmp_path, "A->W", "train", 0)
    write_run(tmp_path, "A->W", "tune", 0, skip=("memory/peak_mib", "memory/kept_for_backward_mib"))
    write_run(tmp_path, "A->W", "eval", 0, skip=("memory/peak_mib", "memory/kept_for_backward_mib"))
    missing = (r"2 run\(s\) lack memory/kept_for_backward_mib, memory/peak_mib \(shown as '-'\): "
               r"A2W_eval_s0, A2W_tune_s0")
    with pytest.warns(UserWarning, match=missing):
        runs = sweep.load_runs(tmp_path)
    rows = table.summarize(runs)
    tune = rows[2]
    assert tune.mode == "tune" and tune.metrics["peak_mib"] is None and tune.vs_train["peak_mib"] is None
    line = next(line for line in table.to_markdown(runs, rows).splitlines() if "| tune |" in line)
    assert cells(line)[5] == "-" and cells(line)[7] == "-"
    assert figures.plot(runs, rows, tmp_path / "plots")


def test_gpu_runs_get_their_own_table_with_cuda_labels(tmp_path):
    write_run(tmp_path, "A->W", "eval", 0, device="cuda:0")
    write_run(tmp_path, "A->W", "eval", 1)
    runs = sweep.load_runs(tmp_path)
    rows = table.summarize(runs)
    assert [row.section[2] for row in rows] == ["cpu", "cuda"]
    text = table.to_markdown(runs, rows)
    assert "## office31 · resnet50 · cuda (1 finished runs)" in text
    assert "step peak MiB (probe step, CUDA max allocated)" in text and "peak MiB (CUDA max allocated)" in text
    assert text.count("peak RSS MiB") == 1


@pytest.fixture(scope="module")
def benchmark_json(tmp_path_factory):
    """A real benchmark JSON of the digit backbone, from the benchmark tool itself (tiny batch, few reps)."""
    from benchmarks.__main__ import main as benchmark

    path = tmp_path_factory.mktemp("bench") / "benchmark.json"
    benchmark(["--model", "dtn", "--batch-size", "2", "--resolution", "28", "--device", "cpu", "--reps", "2",
               "--warmup", "1", "--modes", "train", "eval", "tune", "deploy", "--json", str(path)])
    return path


def test_benchmark_json_is_quoted_beside_the_runs(tmp_path, benchmark_json):
    for mode in MODES:
        run_dir = write_run(tmp_path, "A->W", mode, 0, name=f"dtn_{mode}")
        (run_dir / "config.json").write_text(json.dumps({**config("A->W", mode, 0), "arch": "dtn"}))
    write_run(tmp_path, "A->W", "tune", 0, name="resnet50_tune")  # another backbone: the benchmark is not its own
    (tmp_path / "benchmark.json").write_bytes(benchmark_json.read_bytes())
    assert main([str(tmp_path)]) == 0
    times = {mode: record["time_ms"] for mode, record in json.loads(benchmark_json.read_text())["results"].items()}
    dtn, resnet = (tmp_path / "report.md").read_text().split("## office31 · resnet50 · cpu")
    for mode in MODES:
        row = cells(next(line for line in dtn.splitlines() if line.startswith(f"| A->W | dann | {mode} |")))
        changes = [100 * (times[mode] / times[base] - 1) for base in ("train", "eval")]
        assert row[-1] == f"{times[mode]:.1f} ({changes[0]:+.1f}% / {changes[1]:+.1f}%)"
    assert cells(next(line for line in resnet.splitlines() if "| tune |" in line))[-1] == "-"
    assert "### Interleaved benchmark: dtn, batch 2, 28 px, float32, cpu" in resnet
    assert "`python -m benchmarks --model dtn" in resnet
    deploy = cells(next(line for line in resnet.splitlines() if line.startswith("| deploy |")))
    assert deploy[1].startswith(f"{times['deploy']:.1f} [")
    tune_row = cells(next(line for line in resnet.splitlines() if line.startswith("| tune |")))
    record = json.loads(benchmark_json.read_text())["results"]["tune"]
    assert tune_row[-1] == f"{record['f64_param_grad_rel_err']:.1e} / {record['f64_input_grad_rel_err']:.1e}"
    assert float(tune_row[-1].split(" / ")[0]) < 1e-10
    assert imread(tmp_path / "benchmark_time_dtn_cpu.png").shape[0] > 100
    assert "![benchmark_time_dtn_cpu](benchmark_time_dtn_cpu.png)" in resnet


def test_benchmark_option_must_name_a_file(sweep_dir, tmp_path, capsys):
    assert main([str(sweep_dir), "--benchmark", str(tmp_path / "absent.json")]) == 2
    assert capsys.readouterr().err.startswith("error: --benchmark")
    assert not (sweep_dir / "report.md").exists()


def test_unusable_benchmark_json_is_not_quoted(sweep_dir, capsys):
    (sweep_dir / "benchmark.json").write_text('{"meta": {}}')
    assert main([str(sweep_dir)]) == 0
    warning = f"warning: benchmark {sweep_dir / 'benchmark.json'}: not a benchmark JSON"
    assert capsys.readouterr().err.startswith(warning)
    assert "Interleaved benchmark" not in (sweep_dir / "report.md").read_text()


@pytest.mark.parametrize("make", [lambda p: p / "absent", lambda p: p])
def test_empty_or_missing_logdir_fails_clearly(tmp_path, capsys, make):
    logdir = make(tmp_path)
    with pytest.raises(FileNotFoundError):
        sweep.load_runs(logdir)
    assert main([str(logdir)]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_curves_fall_back_to_epochs_when_the_config_lacks_iterations(tmp_path):
    for mode, per_epoch in (("eval", None), ("tune", "many")):
        run_dir = write_run(tmp_path, "A->W", mode, 0)
        settings = {**config("A->W", mode, 0), "iters_per_epoch": per_epoch}
        (run_dir / "config.json").write_text(json.dumps(settings))
    runs = sweep.load_runs(tmp_path)
    (path,) = [p for p in figures.plot(runs, table.summarize(runs), tmp_path / "plots") if "accuracy" in p.name]
    assert imread(path).shape[0] > 100
