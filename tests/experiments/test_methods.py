"""The methods on their own: gradient reversal, the domain adversary, CDAN's conditioning, and how each method
registers its options and is built from them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from experiments import options
from experiments.cdan import CDAN
from experiments.classifier import Classifier
from experiments.dann import DANN
from experiments.finetune import FineTune
from experiments.modules import DomainAdversary, WarmStartGradientReversal


def test_gradient_reversal_warms_up_and_keeps_its_step_in_the_state_dict():
    grl = WarmStartGradientReversal()
    x = torch.ones(3, requires_grad=True)
    grl(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(3))  # lambda_0 = 0
    grl.step = 1000
    x.grad = None
    grl(x).sum().backward()
    assert x.grad == pytest.approx([-(2 / (1 + math.exp(-1)) - 1)] * 3)  # -0.462
    restored = WarmStartGradientReversal()
    restored.load_state_dict(grl.state_dict())
    assert restored.step == 1001
    grl.eval()
    grl(x)
    assert grl.step == 1001  # only training steps count


def test_domain_adversary_labels_the_first_half_source():
    adversary = DomainAdversary(4)
    features = torch.randn(6, 4)
    loss, accuracy = adversary(features)
    logits = adversary.discriminator(features).squeeze(1)
    expected = nn.functional.binary_cross_entropy(torch.sigmoid(logits), torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0 <= accuracy.item() <= 100


@pytest.mark.parametrize("randomized", [False, True])
def test_cdan_conditions_features_on_predictions(randomized):
    cdan = CDAN(Classifier(nn.Flatten(), 12, num_classes=5, bottleneck_dim=8), randomized=randomized,
                randomized_dim=32, entropy=True)
    features, predictions = torch.randn(4, 8), torch.softmax(torch.randn(4, 5), 1)
    mapped = cdan.conditioned(features, predictions)
    if randomized:
        assert mapped.shape == (4, 32)
        assert "r_f" in cdan.state_dict()  # fixed, so checkpoints keep the same projection
    else:
        assert mapped.shape == (4, 40)
        assert torch.allclose(mapped[1].view(5, 8), torch.outer(predictions[1], features[1]))
    loss, figures = cdan(torch.randn(2, 12), torch.tensor([0, 3]), torch.randn(2, 12))
    assert loss.item() == pytest.approx((figures["cls_loss"] + figures["transfer_loss"]).item())


def help_options(method) -> set[str]:
    """The options --help shows."""
    return {word.strip(",") for word in options.get_args_parser(method).format_help().split() if word.startswith("--")}


def test_each_method_registers_only_the_options_that_mean_something_to_it():
    assert options.method_options(FineTune) == []
    assert options.method_options(DANN) == ["bottleneck_dim", "trade_off"]
    assert options.method_options(CDAN) == ["bottleneck_dim", "trade_off", "randomized", "randomized_dim", "entropy"]
    assert not {"--bottleneck-dim", "--trade-off", "--randomized"} & help_options(FineTune)
    assert {"--bottleneck-dim", "--trade-off"} <= help_options(DANN)
    assert "--randomized" not in help_options(DANN)
    assert options.get_args_parser(FineTune).get_default("lr") == 0.001  # the method's own default
    assert options.get_args_parser(DANN).get_default("lr") == 0.01


def test_methods_are_built_from_keyword_arguments():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    dann = DANN.build(backbone, 6, num_classes=5, bottleneck_dim=8, trade_off=0.3)
    assert dann.trade_off == 0.3 and dann.classifier.features_dim == 8
    assert dann.adversary.discriminator[0].in_features == 8
    finetune = FineTune.build(backbone, 6, num_classes=5)
    assert isinstance(finetune.classifier.bottleneck, nn.Identity) and finetune.classifier.features_dim == 6
    cdan = CDAN.build(backbone, 6, num_classes=5, bottleneck_dim=8, randomized=True, randomized_dim=16)
    assert cdan.r_f.shape == (8, 16) and cdan.adversary.discriminator[0].in_features == 16
    loss, figures = dann(torch.randn(2, 12), torch.tensor([0, 3]), torch.randn(2, 12))
    assert loss.item() == pytest.approx((figures["cls_loss"] + 0.3 * figures["transfer_loss"]).item())
