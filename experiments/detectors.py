"""torchvision detectors for the detection experiments: Faster R-CNN, RetinaNet or FCOS on a ResNet-FPN or
MobileNetV3-FPN backbone, built for small images, with the backbone's BN in one of the paper's modes.

BN modes of the backbone (the FPN and heads have no BN): train (batch statistics), eval (running statistics, gamma and
beta trainable: MMDetection's norm_eval, through tune.freeze_bn_stats), tune (eval computed as folded convs),
deploy (statistics folded into the convs for good) and frozen (torchvision's FrozenBatchNorm2d: running statistics
and a frozen affine, what torchvision's own detectors use).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, mobilenet_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from experiments.bn_modes import BN_MODES, apply_bn_mode
from experiments.utils import ExperimentError

DETECTORS = ("fasterrcnn", "retinanet", "fcos")
BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large")
DETECTION_BN_MODES = (*BN_MODES, "frozen")
RESNET_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")  # what trainable_layers counts, last first


def build_detector(detector: str, arch: str, num_classes: int, bn_mode: str, image_size: int,
                   fpn_channels: int = 256, trainable_layers: int = 5, imagenet: bool = False,
                   pretrained: str | None = None, report: Callable[[str], None] | None = None) -> nn.Module:
    """The detector in training configuration for `image_size`-px images, weights from `pretrained` (a whole
    detector's state dict) or random (ImageNet backbone weights through torchvision when `imagenet`), then the
    backbone's BN put in `bn_mode` (tune's report of the conversion passed to `report`)."""
    if detector not in DETECTORS:
        raise ExperimentError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if arch not in BACKBONES:
        raise ExperimentError(f"unknown detection backbone {arch!r}: choose one of {', '.join(BACKBONES)}")
    two_stage = detector == "fasterrcnn"
    backbone = _backbone(arch, bn_mode == "frozen", fpn_channels, trainable_layers, imagenet, two_stage)
    sizes = {"min_size": image_size, "max_size": image_size}
    if two_stage:  # lighter than torchvision's defaults for ~100-px images: fewer proposals, a narrower box head
        model = FasterRCNN(
            backbone, None, **sizes,
            rpn_anchor_generator=AnchorGenerator(((12,), (24,), (48,), (96,), (192,))[:_levels(backbone)],
                                                 ((0.5, 1.0, 2.0),) * _levels(backbone)),
            rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
            rpn_post_nms_top_n_test=100, box_batch_size_per_image=128,
            box_head=TwoMLPHead(backbone.out_channels * 7 * 7, 256), box_predictor=FastRCNNPredictor(256, num_classes))
    else:
        scales = tuple((s, round(s * 2 ** (1 / 3)), round(s * 2 ** (2 / 3))) for s in (12, 24, 48, 96, 192))
        anchors = AnchorGenerator(scales if detector == "retinanet" else ((8,), (16,), (32,), (64,), (128,)),
                                  ((0.5, 1.0, 2.0) if detector == "retinanet" else (1.0,),) * 5)
        model = (RetinaNet if detector == "retinanet" else FCOS)(backbone, num_classes, **sizes,
                                                                 anchor_generator=anchors)
    if pretrained is not None:
        load_detector_weights(model, Path(pretrained))
    converted = apply_bn_mode(model.backbone.body, bn_mode) if bn_mode != "frozen" else None
    if converted is not None and report is not None:
        report(str(converted))
    return model


def _levels(backbone: BackboneWithFPN) -> int:
    """Feature maps the backbone returns: its returned stages plus the FPN's extra level."""
    return len(backbone.body.return_layers) + 1


def _backbone(arch: str, frozen_bn: bool, fpn_channels: int, trainable_layers: int, imagenet: bool,
              two_stage: bool) -> BackboneWithFPN:
    """ResNet stages C2-C5 (two-stage: P2-P6) or C3-C5 plus P6/P7 (one-stage), or MobileNetV3's last two stages,
    under an FPN; only the last `trainable_layers` stages train (ResNet: 0-5, MobileNetV3: 0-6), as in torchvision."""
    norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    one_stage_extra = LastLevelP6P7(fpn_channels, fpn_channels)
    if arch.startswith("mobilenet"):
        return mobilenet_backbone(backbone_name=arch, weights=_imagenet(arch) if imagenet else None, fpn=True,
                                  norm_layer=norm_layer if frozen_bn else partial(nn.BatchNorm2d, eps=0.001,
                                                                                  momentum=0.01),
                                  trainable_layers=trainable_layers,
                                  extra_blocks=None if two_stage else LastLevelP6P7(256, 256))
    body = torchvision.models.get_model(arch, weights=_imagenet(arch) if imagenet else None, norm_layer=norm_layer)
    training = RESNET_STAGES[:trainable_layers] + (("bn1",) if trainable_layers == len(RESNET_STAGES) else ())
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(name.startswith(training))
    stages = (1, 2, 3, 4) if two_stage else (2, 3, 4)
    widths = [body.inplanes // 8 * 2 ** (stage - 1) for stage in stages]
    return BackboneWithFPN(body, {f"layer{stage}": str(i) for i, stage in enumerate(stages)}, widths, fpn_channels,
                           extra_blocks=LastLevelMaxPool() if two_stage else one_stage_extra)


def _imagenet(arch: str) -> torchvision.models.WeightsEnum:
    return torchvision.models.get_model_weights(arch).IMAGENET1K_V1


def load_detector_weights(model: nn.Module, path: Path) -> None:
    """Load a whole detector's state dict (bare, under 'model', or an engine checkpoint of experiments.detection),
    which must fit exactly (FrozenBatchNorm2d takes BatchNorm2d's weights: it ignores num_batches_tracked)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as error:
        raise ExperimentError(f"cannot read --pretrained {path}: {error}") from error
    state = state.get("model", state)
    state = {key.removeprefix("detector."): value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).replace("\n", " ")[:300]
        raise ExperimentError(f"--pretrained {path} does not fit this detector (same --detector, -a, "
                              f"--fpn-channels and classes needed): {first}") from error
