"""The training-step benchmark: exact memory counting, gradient errors, peers that are missing or crash, a smoke run."""

import copy
import json
import sys

import pytest
import torch
from matplotlib.image import imread
from torch import nn

import tune
from benchmarks import __main__ as cli
from benchmarks.measure import gradients, max_relative_error, summarize
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
    grads = [gradients(Bench("eval", m, m), x, y, cast) for m in twins]
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


def test_smoke_run_prints_table_and_writes_json_and_png(tmp_path, capsys):
    json_path, png_path = tmp_path / "bench.json", tmp_path / "bench.png"
    modes = ["train", "eval", "tune", "deploy"]
    cli.main([*SMOKE, "--optimizer-step", "--modes", *modes, "--json", str(json_path), "--png", str(png_path)])
    printed = capsys.readouterr().out
    assert all(f"| {mode} | ok |" in printed for mode in modes)
    saved = json.loads(json_path.read_text())
    assert saved["meta"]["command"].startswith("python -m benchmarks --model resnet18")
    assert saved["meta"]["threads"] == torch.get_num_threads()
    results = saved["results"]
    assert set(results) == set(modes)
    for record in results.values():
        assert record["status"] == "ok" and len(record["times_ms"]) == 2
        assert record["peak_mib"] == pytest.approx(record["step_peak_mib"] + record["resident_mib"])
    assert results["eval"]["vs_eval"]["kept_mib"] == 1.0
    assert results["tune"]["kept_mib"] < results["eval"]["kept_mib"]
    assert results["deploy"]["kept_mib"] <= results["tune"]["kept_mib"]
    assert "param_grad_rel_err" not in results["train"]  # batch statistics: not Eval's function
    assert results["tune"]["params_compared"] == results["eval"]["params_compared"]
    assert results["tune"]["input_grad_rel_err"] < 1e-2
    assert results["eval"]["f64_param_grad_rel_err"] == 0.0  # the reference's own function
    for mode in ("tune", "deploy"):  # Eval's gradients exactly, up to float64 rounding
        assert results[mode]["f64_param_grad_rel_err"] < 1e-10 and results[mode]["f64_input_grad_rel_err"] < 1e-10
    assert imread(png_path).shape[0] > 100
