"""The models benchmarks run: randomly initialised torchvision or timm models whose BN layers hold realistic
statistics, and the timm models tune is surveyed on. The zoo tune is tested on, `randomize_bn` and the fx-free count
of the BNs a conv feeds are the tests' oracles (tests/tune/oracles.py), taken from there."""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn

from tests.tune.oracles import ZOO, bns_fed_directly_by_a_conv, randomize_bn  # noqa: F401 - used from here

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# timm architectures the survey runs: families that use BatchNorm, small members first, with every model whose
# conversion was once a problem (attention caches, Conv2dSame).
SURVEY_TIMM = (
    "resnet10t", "resnet14t", "resnet18", "resnet18d", "resnet26", "resnet26t", "resnet34", "resnet50", "resnet50d",
    "resnetblur18", "resnetaa34d", "resnetrs50", "resnext26ts", "resnext50_32x4d", "seresnet18", "seresnet33ts",
    "seresnext26d_32x4d", "seresnext26t_32x4d", "ecaresnet26t", "ecaresnet50d_pruned", "skresnet18", "skresnet34",
    "resnest14d", "resnest26d", "res2net50_14w_8s", "res2next50", "regnetx_002", "regnetx_004", "regnetx_006",
    "regnety_002", "regnety_004", "regnety_008", "regnetz_005", "regnetz_b16", "regnetz_c16", "efficientnet_b0",
    "efficientnet_b1", "efficientnet_b1_pruned", "efficientnet_b0_g16_evos", "efficientnet_lite0",
    "efficientnet_es", "tf_efficientnet_b0", "tf_efficientnet_b1", "tf_efficientnet_lite0", "tf_efficientnet_es",
    "tf_efficientnet_em", "tf_efficientnet_cc_b0_4e", "tf_efficientnetv2_b0", "tf_efficientnetv2_b1",
    "efficientnetv2_rw_t", "gc_efficientnetv2_rw_t", "mobilenetv1_100", "mobilenetv2_035", "mobilenetv2_100",
    "mobilenetv2_110d", "mobilenetv3_rw", "mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv3_large_100",
    "tf_mobilenetv3_small_100", "tf_mobilenetv3_small_minimal_100", "tf_mobilenetv3_large_minimal_100",
    "mobilenetv4_conv_small", "mobilenetv4_conv_medium", "mobilenetv4_hybrid_medium", "mnasnet_050", "mnasnet_100",
    "mnasnet_small", "semnasnet_075", "fbnetc_100", "fbnetv3_b", "spnasnet_100", "lcnet_050", "lcnet_100",
    "tinynet_a", "tinynet_e", "mixnet_s", "mixnet_m", "tf_mixnet_s", "tf_mixnet_m", "ghostnet_050", "ghostnet_100",
    "ghostnetv2_100", "hardcorenas_a", "hardcorenas_f", "rexnet_100", "rexnetr_100", "densenet121",
    "densenetblur121d", "dla34", "dla46_c", "dla60x_c", "dla60_res2net", "dpn48b", "dpn68", "hrnet_w18_small",
    "hrnet_w18_small_v2", "inception_v3", "inception_v4", "inception_resnet_v2", "inception_next_atto",
    "xception41", "legacy_xception", "pnasnet5large", "selecsls42b", "selecsls60", "cspresnet50", "cspdarknet53",
    "cs3darknet_s", "cs3darknet_focus_s", "darknet17", "ese_vovnet19b_dw", "ese_vovnet39b", "vovnet39a",
    "tresnet_m", "repvgg_a0", "repvgg_b0", "mobileone_s0", "mobileone_s1", "fastvit_t8", "fastvit_sa12",
    "fastvit_mci0", "efficientvit_b0", "efficientvit_m0", "efficientvit_m1", "levit_128s", "levit_conv_128s",
    "levit_192", "tiny_vit_5m_224", "efficientformer_l1", "efficientformerv2_s0", "efficientformerv2_s1",
    "convmixer_768_32", "hgnet_tiny", "hgnetv2_b0", "hgnetv2_b1", "repghostnet_050", "repghostnet_100",
    "mobilevit_xxs", "mobilevit_xs", "mobilevitv2_050", "gernet_s", "gernet_m", "repvit_m0_9", "repvit_m1",
    "nextvit_small", "gcresnet33ts", "gcresnext26ts", "lambda_resnet26t", "halonet26t", "botnet26t_256",
    "bat_resnext26ts", "legacy_seresnet18", "legacy_seresnext26_32x4d", "sebotnet33ts_256", "eca_resnet33ts",
    "eca_halonext26ts", "eca_botnext26ts_256", "starnet_s1", "starnet_s2", "shvit_s1", "shvit_s2", "fasternet_t0",
    "fasternet_t1", "swiftformer_xs", "swiftformer_s", "test_byobnet", "test_efficientnet", "test_coatnet",
    "test_maxvit", "coatnet_nano_rw_224", "vgg11_bn", "resnetv2_50",
)

def resnet50_narrow() -> nn.Module:
    """ResNet-50's 53 Conv->BN pairs with 3x3 convs 2 channels per group wide (instead of 64): at a small batch and
    resolution, a step is then almost only the per-op cost a GPU step pays on the host."""
    return torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [3, 4, 6, 3], width_per_group=2)


def random_model(name: str) -> nn.Module:
    """A randomly initialised model: torchvision's, timm's when named 'timm:NAME', resnet50_narrow, or one of the
    experiments' own backbones (e.g. 'dtn') with a 10-class linear head."""
    if name == "resnet50_narrow":
        return resnet50_narrow()
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name.removeprefix("timm:"), pretrained=False)
    from experiments.models import LOCAL_ARCHS

    if name in LOCAL_ARCHS:
        backbone = LOCAL_ARCHS[name]()
        return nn.Sequential(backbone, nn.Linear(backbone.features, 10))
    return torchvision.models.get_model(name, weights=None)


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: Tensor, batches: int = 2) -> nn.Module:
    """Randomise BN affine parameters, then set running statistics to the true batch statistics of random inputs
    shaped like `x` (at least 8 of them, so that a 1x1 feature map still has batch statistics), so that folding is
    tested on non-trivial values while activations stay well scaled (fp16 included)."""
    model.train()
    bns = [module for module in model.modules() if isinstance(module, BN_TYPES) and module.track_running_stats]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    for _ in range(batches):
        model(torch.randn(max(len(x), 8), *x.shape[1:], device=x.device, dtype=x.dtype))
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    return model.eval()
