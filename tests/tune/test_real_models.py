"""Real models: every eligible pair is converted, training matches Eval, and memory kept for backward is Deploy's."""

from __future__ import annotations

import copy

import pytest
import torch

import tune
from tests.tune.helpers import assert_matches_eval, kept_bytes, library_model, randomize_bn
from tests.tune.oracles import ZOO, bns_fed_directly_by_a_conv

pytestmark = pytest.mark.slow  # whole networks in float64: minutes on a CPU


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_converts_every_eligible_pair_trains_like_eval_and_keeps_what_deploy_keeps(name):
    torch.manual_seed(0)
    model = randomize_bn(library_model(name)).eval()
    x = torch.randn(2, 3, 64, 64)
    eligible = bns_fed_directly_by_a_conv(model, x)
    assert eligible, "the oracle found no Conv -> BN pair"
    # float64: in float32, rounding flips the odd ReLU/max-pool decision deep in a random network in either mode.
    report = assert_matches_eval(copy.deepcopy(model).double(), x.double(), rtol=1e-9, steps=0)
    assert {bn for _, bn in report.pairs} == eligible
    tuned, deployed = copy.deepcopy(model), copy.deepcopy(model)
    tune.turn_on(tuned)
    tune.turn_on(deployed, mode="deploy")
    tuned_bytes, deploy_bytes, eval_bytes = (kept_bytes(m, x) for m in (tuned, deployed, model))
    assert tuned_bytes <= 1.01 * deploy_bytes, (tuned_bytes, deploy_bytes)
    assert tuned_bytes < eval_bytes


@pytest.mark.parametrize(("name", "reason"), [
    ("timm:tf_efficientnet_b0", None),  # Conv2dSame: TF 'same' padding computed in its forward
    ("timm:mixnet_s", "torch.cat"),  # mixed kernel sizes: one BN after concatenated group convs
    ("timm:repvgg_a0", "not from a conv"),  # the identity branch's BN sees the block input
    ("timm:hrnet_w18_small", None),  # many parallel branches and fusions
])
def test_more_timm_models_convert_what_they_can_and_say_why_not(name, reason):
    torch.manual_seed(0)
    model = randomize_bn(library_model(name)).eval().double()
    report = assert_matches_eval(model, torch.randn(2, 3, 64, 64, dtype=torch.float64), rtol=1e-9, steps=0)
    assert report.pairs
    if reason is None:
        assert report.skipped == []
    else:
        assert report.skipped and any(reason in why for _, why in report.skipped)
