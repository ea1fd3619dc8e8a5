"""The training-step benchmark: exact memory counting, gradient errors, peers that are missing or crash, presets,
detectors, the summary table, and a smoke run."""

import copy
import json
import sys

import pytest
import torch
from matplotlib.image import imread
from torch import nn

import tune
from benchmarks import __main__ as cli
from benchmarks import summary, workloads
from benchmarks.measure import gradients, kept_mib, max_relative_error, summarize
from benchmarks.models import calibrate_bn
from benchmarks.modes import MODES, Bench, Mode, prepare
from benchmarks.report import format_table

SMOKE = ["--model", "resnet18", "--batch-size", "2", "--resolution", "32", "--device", "cpu", "--reps", "2"]
SMOKE += ["--warmup", "1"]


def test_kept_for_backward_counts_a_known_op_exactly():
    scale = nn.Parameter(torch.full((1000,), 2.0))
    x = torch.randn(1000, requires_grad=True)
    with tune.kept_for_backward(exclude=[scale]) as kept:
        loss = (scale * x).exp().sum()  # mul keeps scale (excluded) and x; exp keeps its output
    loss.backward()
    assert kept.nbytes == 2 * 1000 * 4


def conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5))


def test_calibrated_bn_statistics_are_not_trivial():
    model = calibrate_bn(conv_bn(), torch.randn(4, 3, 8, 8))
    bn = model[1]
    assert not model.training
    assert not torch.allclose(bn.running_mean, torch.zeros(4))
    assert not torch.allclose(bn.running_var, torch.ones(4))
    assert not torch.allclose(bn.weight, torch.ones(4))


def test_gradient_error_of_identical_models_is_zero_and_scales_with_a_perturbation():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 8, 8, requires_grad=True), torch.tensor([1, 3])
    model = calibrate_bn(conv_bn(), x.detach())
    twins = [copy.deepcopy(model) for _ in range(2)]
    cast = torch.autocast("cpu", enabled=False)
    batch = workloads.Batch(x, lambda run: torch.nn.functional.cross_entropy(run(x), y))
    grads = [gradients(Bench("eval", m, m), batch, cast) for m in twins]
    assert set(grads[0]) == {name for name, _ in model.named_parameters()} | {"input"}
    assert max_relative_error(grads[0], grads[1]) == 0.0
    perturbed = {name: g * 1.01 for name, g in grads[0].items()}
    assert max_relative_error(perturbed, grads[1]) == pytest.approx(0.01)


def test_missing_peer_is_reported_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "mmengine", None)  # makes importlib's find_spec report it absent
    assert prepare("mmengine", conv_bn(), optimizer_step=False).status == "not installed"


def test_crashing_peer_becomes_a_failed_row(monkeypatch):
    def crash(model: nn.Module) -> None:
        raise RuntimeError("cannot trace this model\nsecond line")

    monkeypatch.setitem(MODES, "compile", Mode(crash, compiled=True))
    bench = prepare("compile", conv_bn(), optimizer_step=False)
    assert bench.attempt(lambda: 1 / 0) is None  # a failed mode is not run again
    record = summarize(bench)
    assert record == {"status": "failed: RuntimeError: cannot trace this model"}
    table = format_table({"compile": record})
    assert "| compile | failed: RuntimeError: cannot trace this model |" in table


@pytest.mark.slow
def test_smoke_run_prints_table_and_writes_json_and_png(tmp_path, capsys):
    json_path, png_path = tmp_path / "bench.json", tmp_path / "bench.png"
    modes = ["train", "eval", "tune", "deploy"]
    cli.main([*SMOKE, "--optimizer-step", "--modes", *modes, "--json", str(json_path), "--png", str(png_path)])
    printed = capsys.readouterr().out
    assert all(f"| {mode} | ok |" in printed for mode in modes)
    saved = json.loads(json_path.read_text())
    assert saved["meta"]["command"].startswith("python -m benchmarks --model resnet18")
    assert saved["meta"]["threads"] == torch.get_num_threads() and saved["complete"] is True
    assert saved["meta"]["numerics"]["cudnn.allow_tf32"] == torch.backends.cudnn.allow_tf32
    results = saved["results"]
    assert set(results) == set(modes)
    for record in results.values():
        assert record["status"] == "ok" and len(record["times_ms"]) == 2
        assert record["peak_mib"] == pytest.approx(record["step_peak_mib"] + record["resident_mib"])
    assert results["eval"]["vs_eval"]["kept_mib"] == 1.0
    assert all(record["aten_ops"] > 0 for record in results.values())
    assert results["tune"]["kept_mib"] < results["eval"]["kept_mib"]
    assert results["deploy"]["kept_mib"] <= results["tune"]["kept_mib"]
    assert "param_grad_rel_err" not in results["train"]  # batch statistics: not Eval's function
    assert results["tune"]["params_compared"] == results["eval"]["params_compared"]
    assert results["tune"]["input_grad_rel_err"] < 1e-2
    assert results["eval"]["f64_param_grad_rel_err"] == 0.0  # the reference's own function
    for mode in ("tune", "deploy"):  # Eval's gradients exactly, up to float64 rounding
        assert results[mode]["f64_param_grad_rel_err"] < 1e-10 and results[mode]["f64_input_grad_rel_err"] < 1e-10
    assert set(results["tune"]["f64_grad_rel_l2_by_kind"]) == {"conv weight", "BN gamma", "BN beta", "other", "input"}
    assert all(error < 1e-10 for error in results["tune"]["f64_grad_rel_l2_by_kind"].values())
    assert "BN gamma" not in results["deploy"]["grad_rel_l2_by_kind"]  # Deploy has no BN left
    assert "| tune |" in printed.split("per kind")[1]  # the precision table follows the main one
    assert imread(png_path).shape[0] > 100


def test_attack_task_freezes_every_parameter_and_compares_the_input_gradient_alone(tmp_path):
    json_path = tmp_path / "attack.json"
    cli.main([*SMOKE, "--task", "attack", "--optimizer-step", "--modes", "eval", "tune", "--json", str(json_path)])
    results = json.loads(json_path.read_text())["results"]
    for record in results.values():
        assert record["status"] == "ok" and record["params_compared"] == "0/0"
        assert set(record["grad_rel_l2_by_kind"]) == {"input"}
    assert results["tune"]["f64_input_grad_rel_err"] < 1e-10
    assert results["tune"]["kept_mib"] < results["eval"]["kept_mib"]


def test_an_interrupted_benchmark_leaves_a_complete_json_of_every_stage_it_finished(tmp_path, monkeypatch):
    json_path = tmp_path / "bench.json"
    real = cli.measure

    def stopped_while_timing(args, progress):
        def stop(benches, *rest):
            raise KeyboardInterrupt

        monkeypatch.setattr("benchmarks.measure.time_round_robin", stop)
        return real(args, progress)

    monkeypatch.setattr(cli, "measure", stopped_while_timing)
    with pytest.raises(KeyboardInterrupt):
        cli.main([*SMOKE, "--modes", "eval", "tune", "--json", str(json_path)])
    saved = json.loads(json_path.read_text())
    assert saved["complete"] is False
    assert all(saved["results"][mode]["kept_mib"] > 0 for mode in ("eval", "tune"))
    assert "time_ms" not in saved["results"]["tune"]
    assert [path.name for path in tmp_path.iterdir()] == ["bench.json"]  # no partial file left behind


def test_host_bound_preset_sets_its_defaults_and_explicit_options_win():
    args = cli.parse_args(["--preset", "host-bound"])
    assert (args.model, args.batch_size, args.resolution, args.threads) == ("resnet50_narrow", 1, 32, 1)
    assert "train" not in args.modes  # one 1x1 feature map has no batch statistics
    assert cli.parse_args(["--preset", "host-bound", "--batch-size", "4"]).batch_size == 4


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--device", "cuda:0"], ["--preset", "fast"]])
def test_bad_options_are_argparse_errors(argv, capsys):
    if argv[0] == "--device" and torch.cuda.is_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_detector_trains_its_losses_with_frozen_bn_and_tune_keeps_less():
    torch.manual_seed(0)
    base, batch = workloads.build("fasterrcnn_resnet50_fpn", 1, 64, torch.device("cpu"))
    assert base.training and batch.input is None and batch.float64 is None
    cast = torch.autocast("cpu", enabled=False)
    kept = {}
    for name in ("eval", "tune"):
        bench = prepare(name, base, optimizer_step=False)
        assert bench.status == "ok", bench.status
        kept[name] = kept_mib(bench, batch, cast)
        backbone_bns = [m for m in bench.model.backbone.body.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bench.model.training and not any(bn.training for bn in backbone_bns)
    assert bench.result["note"].startswith("53 pairs")
    assert kept["tune"] < kept["eval"]


def test_summary_puts_every_configuration_in_one_table(tmp_path, capsys):
    def document(model, time_eval, time_tune):
        results = {"eval": {"status": "ok", "time_ms": time_eval, "vs_eval": {"time_ms": 1.0}},
                   "tune": {"status": "ok", "time_ms": time_tune, "vs_eval": {"time_ms": time_tune / time_eval}},
                   "mmengine": {"status": "not installed"}}
        args = {"model": model, "batch_size": 2, "resolution": 32, "dtype": "float32", "device": "cpu"}
        return {"meta": {"args": args}, "results": results}

    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, doc in zip(paths, (document("resnet18", 10.0, 8.0), document("resnet50", 20.0, 25.0)), strict=True):
        path.write_text(json.dumps(doc))
    assert summary.main([str(p) for p in paths]) == 0
    table = capsys.readouterr().out
    assert "| resnet18 b2/32px float32 cpu | tune | 8.0 | 0.80x |" in table
    assert "| resnet50 b2/32px float32 cpu | tune | 25.0 | 1.25x |" in table
    assert "| resnet50 b2/32px float32 cpu | mmengine | not installed |" in table
    (tmp_path / "bad.json").write_text("{")
    assert summary.main([str(tmp_path / "bad.json")]) == 1
