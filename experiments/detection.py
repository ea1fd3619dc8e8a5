"""Detection transfer: a torchvision detector (Faster R-CNN, RetinaNet, FCOS on a ResNet- or MobileNetV3-FPN) fine-
tuned with its backbone's BN in --bn-mode train|eval|tune|deploy|frozen, scored by COCO mAP after every epoch.

    python -m experiments.detection data -d scenes -s M --detector fasterrcnn -a resnet18 --scratch --bn-mode train
    python -m experiments.detection data -d scenes -s U --detector fasterrcnn -a resnet18 \\
        --pretrained logs/detection/scenes_M/fasterrcnn_resnet18/train/seed0/checkpoint.pt --bn-mode tune
    python -m experiments.detection /data/coco -d coco --detector retinanet -a resnet50 --resize-size 800 --bn-mode tune

Data: digit scenes (-d scenes -s M|U, nothing to download), COCO-format folders (-d coco) or Pascal VOC 2007 (-d voc);
see datasets/detection.py. --pretrained loads a whole detector (e.g. the checkpoint of a run on the other domain);
without it or --scratch the backbone starts from torchvision's ImageNet weights (downloaded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from datasets.detection import DETECTION_NAMES
from experiments import detection_task, engine, layout, rundir
from experiments.argtypes import non_negative_int, positive_int
from experiments.data import TaskData
from experiments.detectors import BACKBONES, DETECTION_BN_MODES, DETECTORS, build_detector
from experiments.method import Method, Options
from experiments.textlog import LOG


def detection_dataset(text: str) -> str:
    """argparse type of -d: a detection dataset name."""
    if text.lower() not in DETECTION_NAMES:
        raise argparse.ArgumentTypeError(f"unknown detection dataset {text!r}: use one of {', '.join(DETECTION_NAMES)}")
    return text.lower()


class Detection(Method):
    """Detector fine-tuning: the sum of the detector's own training losses on the labeled batch."""

    name = "detection"
    dataset_names = DETECTION_NAMES
    dataset_type = staticmethod(detection_dataset)
    bn_modes = DETECTION_BN_MODES
    backbone_lr_scale = 1.0  # a whole pretrained detector is fine-tuned at one lr, as MMDetection does
    defaults = {"lr": 0.02, "lr_gamma": 0.0, "wd": 1e-4, "batch_size": 4, "resize_size": 80, "epochs": 2,
                "iters_per_epoch": 100, "workers": 0, "print_freq": 20}

    def __init__(self, detector: nn.Module) -> None:
        nn.Module.__init__(self)  # no Classifier: the detector is the whole model
        self.detector = detector

    @property
    def backbone(self) -> nn.Module:
        return self.detector.backbone

    @classmethod
    def add_arguments(cls, parser: Options) -> None:
        parser.add_argument("--detector", default="fasterrcnn", choices=DETECTORS, help="torchvision detector")
        parser.add_argument("--fpn-channels", type=positive_int, default=256, help="FPN width (ResNet backbones)")
        parser.add_argument("--trainable-layers", type=non_negative_int, default=5,
                            help="backbone stages trained, from the top (ResNet 0-5, MobileNetV3 0-6)")
        parser.add_argument("--warmup-iters", type=non_negative_int, default=50,
                            help="linear lr warm-up over the first N iterations (detectors trained from scratch "
                                 "diverge without)")
        parser.add_argument("--test-images", type=non_negative_int, default=0,
                            help="evaluate on the first N test images only (0: all)")

    @classmethod
    def check_args(cls, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        if args.arch not in BACKBONES:
            parser.error(f"-a {args.arch}: detection backbones are {', '.join(BACKBONES)}")
        if args.phase == "test":
            parser.error("detection has no --phase test: every epoch's mAP is in the run's TensorBoard events and "
                         "results.json")
        if args.target:
            parser.error("detection trains and tests on one dataset: drop -t")
        if (args.dataset == "scenes") != bool(args.source):
            parser.error("-d scenes needs -s M or -s U (the digits domain)" if args.dataset == "scenes"
                         else f"{args.dataset} has no domains: drop -s")
        if args.source and args.source not in ("M", "U"):
            parser.error(f"-s {args.source}: the scenes' domains are M (MNIST) and U (UCI digits)")
        if args.log is None:
            args.log = Path("logs", "detection", cls.task_name(args).replace(" ", "_"),
                            f"{args.detector}_{args.arch}", args.bn_mode, f"seed{args.seed}")

    @classmethod
    def task_name(cls, args: argparse.Namespace) -> str:
        return f"{args.dataset} {args.source}" if args.source else args.dataset

    @classmethod
    def build_data(cls, config: dict, start_step: int, rank: int, world_size: int) -> TaskData:
        return detection_task.build(config, start_step, rank, world_size)

    @classmethod
    def from_config(cls, config: dict, num_classes: int, verbose: bool) -> Detection:
        detector = build_detector(config["detector"], config["arch"], num_classes, config["bn_mode"],
                                  config["resize_size"], config["fpn_channels"], config["trainable_layers"],
                                  imagenet=not config["scratch"] and config["pretrained"] is None,
                                  pretrained=config["pretrained"], report=LOG.info if verbose else None)
        return cls(detector)

    def forward(self, x_s: list[Tensor], y_s: list[dict[str, Tensor]],
                x_t: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        losses = self.detector(x_s, y_s)
        return sum(losses.values()), losses


class DetectionTrainer(engine.Trainer):
    """The engine's loop, scored by COCO mAP: eval/map and eval/map50 every epoch, their best at the end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.evaluated_epochs == 0:
            self.scores = {"map": 0.0, "map50": 0.0, "best_map": 0.0, "best_map50": 0.0}

    def evaluate_epoch(self, epoch: int) -> None:
        result = detection_task.evaluate(self.model.detector, self.task.test, self.device, self.main, self.unreadable,
                                         self._agree_to_stop if self.world_size == 1 else None)
        if result is None:
            return
        for name, value in result.items():
            self.scores[name] = value
            self.scores[f"best_{name}"] = max(self.scores[f"best_{name}"], value)
            if self.main:
                self.writer.add_scalar(f"{layout.EPOCH_TAGS}{name}", value, epoch)
        self.evaluated_epochs = epoch + 1
        LOG.info(f"Epoch [{epoch}] mAP {result['map']:.4f} mAP@.5 {result['map50']:.4f} "
                 f"(best mAP@.5 {self.scores['best_map50']:.4f})")

    def _write_results(self) -> None:
        last_epoch = self.config["epochs"] - 1
        for name in ("best_map", "best_map50"):
            self.writer.add_scalar(f"{layout.EPOCH_TAGS}{name}", self.scores[name], last_epoch)
        self.writer.flush()
        path = rundir.write_results(self.run_dir, {"config": self.config, "iterations": self.step, **self.scores,
                                                   "unreadable_images": sorted(self.unreadable.images.values())})
        LOG.info(f"done: best mAP@.5 {self.scores['best_map50']:.4f}, mAP {self.scores['best_map']:.4f} ({path})")


Detection.trainer = DetectionTrainer

if __name__ == "__main__":
    sys.exit(engine.main(Detection))
