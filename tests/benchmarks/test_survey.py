"""The survey's pieces: one model's checks, the isolation of a model in a subprocess, what counts as a finding, the
summary, and a command that never replaces a result by accident."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import survey

GOOD = {
    "model": "timm:good", "status": "ok", "bn_layers": 3, "pairs": 2, "hook_count": 3, "dtype": "float64",
    "rtol": survey.RTOL, "missed": {"bn3": "output of conv conv3 is also used by a residual add (+)"}, "extra": [],
    "forward_error": 1e-15, "input_grad_error": 1e-14, "grad_error": 1e-13, "deploy_error": 0.0,
    "kept_eval": 300, "kept_tune": 200, "kept_deploy": 200,
    "tune_copies": {"save": None, "deepcopy": None}, "deploy_copies": {"save": None, "deepcopy": None},
}


def test_check_model_on_a_real_model_finds_nothing_wrong():
    record = survey.check_model("mobilenet_v3_small", survey.Stages(), 8 * 2**30)
    assert record["dtype"] == "float64" and record["pairs"] == record["hook_count"] > 0
    assert survey.findings({"model": "mobilenet_v3_small", "status": "ok", **record}) == {}
    assert record["kept_tune"] < record["kept_eval"]


def test_a_good_record_has_no_findings_and_each_failure_is_found():
    assert survey.findings(GOOD) == {}
    broken = [
        ({"grad_error": 1e-6}, "float64 mismatch"),
        ({"kept_tune": 203}, "kept > 1.01x Deploy"),
        ({"tune_copies": {"save": "TypeError: cannot pickle", "deepcopy": None}}, "save after turn_on (tune)"),
        ({"deploy_copies": {"save": None, "deepcopy": "boom"}}, "deepcopy after turn_on (deploy)"),
        ({"missed": {"bn3": "its input comes from module relu (ReLU), not from a conv"}}, "pairs missed, fixable"),
        ({"extra": ["bn9"]}, "pairs the hook count does not see"),
        ({"status": "crash", "error": "RuntimeError in tune: x"}, "crash"),
    ]
    for change, finding in broken:
        assert finding in survey.findings({**GOOD, **change}), finding


def test_misses_by_design_are_told_apart_from_fixable_ones():
    assert survey.miss_category("torch.fx cannot trace the model (its forward branches on the value of a tensor)")
    assert survey.miss_category("its conv StdConv2d has a custom forward (not just 'same' padding, then a plain conv)")
    assert survey.miss_category("its input comes from torch.cat, not from a conv") is None


def test_summary_counts_failures_and_names_the_models():
    records = [GOOD, {**GOOD, "model": "bad", "grad_error": 1e-3}, {"model": "slow", "status": "timeout"}]
    table = survey.summary(records)
    assert "| models surveyed | 3 (2 torchvision, 1 timm) |" in table
    assert "| float64 mismatch | 1: bad |" in table and "| timeout | 1: slow |" in table
    assert "| crash | 0 |" in table and "| missed: the conv's output has another user | 2 |" in table


def test_a_model_past_its_time_limit_is_recorded_as_a_timeout():
    record = survey.run_isolated("resnet18", timeout=0.5, memory_gib=8)
    assert record["model"] == "resnet18" and record["status"] == "timeout"
    assert record["error"].startswith("stage: ")  # how far it got


def test_an_existing_survey_is_never_replaced_without_update(tmp_path, capsys):
    out = tmp_path / "survey.json"
    out.write_text(json.dumps({"meta": {}, "models": []}))
    with pytest.raises(SystemExit) as exit_info:
        survey.main(["--out", str(out), "--models", "resnet18"])
    assert exit_info.value.code != 0 and "error:" in capsys.readouterr().err
    assert json.loads(out.read_text()) == {"meta": {}, "models": []}
    with pytest.raises(SystemExit):
        survey.main(["--out", str(tmp_path / "missing.json"), "--update", "--models", "resnet18"])
    assert not (tmp_path / "missing.json").exists()


def test_resume_surveys_only_the_models_without_a_record(tmp_path):
    out = tmp_path / "survey.json"
    out.write_text(json.dumps({"meta": {}, "models": [GOOD]}))
    assert survey.main(["--out", str(out), "--update", "--resume", "--models", "timm:good"]) == [GOOD]
    assert json.loads(out.read_text())["models"] == [GOOD]
    assert survey.main(["--out", str(out), "--summary"]) == [GOOD]


def test_an_allocation_past_the_memory_limit_is_out_of_memory_not_a_crash():
    with pytest.raises(RuntimeError) as refused:
        torch.empty(2**50, dtype=torch.uint8)  # a PiB: the CPU allocator refuses it
    assert survey._out_of_memory(refused.value)
    assert not survey._out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert "out-of-memory" in survey.findings({**GOOD, "status": "out-of-memory", "error": str(refused.value)})
