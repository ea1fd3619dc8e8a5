"""Detection transfer: Tune computes Eval's losses and gradients in float64 and keeps less for backward; every BN
mode trains and is scored by mAP; resumes are exact; bad input stops with one `error:` line."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import tune
from datasets.scenes import DigitScenes
from experiments import engine
from experiments.detection import Detection
from experiments.detectors import DETECTION_BN_MODES, build_detector
from tests.experiments.helpers import saved_model, scalars

SIZE = 64  # the detectors' input side in these tests (scenes are resized to it)
TINY = ["-a", "resnet18", "--fpn-channels", "32", "--resize-size", str(SIZE), "-b", "2", "-i", "2", "--epochs", "1",
        "-p", "1", "--test-images", "4", "-j", "0", "--device", "cpu"]


def scenes_args(run_dir, *extra):
    return ["unused", "-d", "scenes", "-s", "U", *TINY, "--log", str(run_dir), *extra]


@pytest.fixture(scope="module")
def source_weights(tmp_path_factory):
    """A Faster R-CNN and a RetinaNet whose BN running statistics are far from 0/1 (as after pretraining), saved."""
    paths = {}
    for detector in ("fasterrcnn", "retinanet", "fcos"):
        torch.manual_seed(0)
        model = build_detector(detector, "resnet18", 11, "train", SIZE, fpn_channels=32)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        paths[detector] = tmp_path_factory.mktemp("weights") / f"{detector}.pt"
        torch.save(model.state_dict(), paths[detector])
    return paths


def batch():
    dataset = DigitScenes("U", "train")
    items = [dataset[index] for index in range(2)]
    return [image for image, _ in items], [target for _, target in items]


def losses_and_gradients(detector, mode, weights, dtype=torch.float64, nudge=0.0):
    """The detector's training losses on a fixed batch with its backbone's BN in `mode` (running variances scaled by
    1 + nudge), every parameter's gradient, and what autograd keeps for backward."""
    model = build_detector(detector, "resnet18", 11, mode, SIZE, fpn_channels=32, pretrained=str(weights)).to(dtype)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.mul_(1 + nudge)
    model.train()
    images, targets = batch()
    torch.manual_seed(1)  # Faster R-CNN samples anchors and proposals at random
    with tune.kept_for_backward(exclude=model) as kept:
        losses = model([image.to(dtype) for image in images], targets)
        total = sum(losses.values())
    total.backward()
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return {name: value.detach() for name, value in losses.items()}, gradients, kept.nbytes


@pytest.mark.parametrize("detector", ["fasterrcnn", "retinanet", "fcos"])
def test_tune_step_equals_eval_in_float64(detector, source_weights, single_thread):
    """Every loss and gradient agrees with Eval's to 1e-9 relative, or to within 10x how far Eval itself moves
    when its BN variances change by 1e-14 (FCOS's GroupNorm heads amplify rounding: a conv bias before GroupNorm
    gets a gradient that is a near-cancelling sum)."""
    eval_losses, eval_grads, eval_kept = losses_and_gradients(detector, "eval", source_weights[detector])
    tune_losses, tune_grads, tune_kept = losses_and_gradients(detector, "tune", source_weights[detector])
    _, nudged_grads, _ = losses_and_gradients(detector, "eval", source_weights[detector], nudge=1e-14)
    assert eval_losses.keys() == tune_losses.keys()
    for name in eval_losses:
        torch.testing.assert_close(tune_losses[name], eval_losses[name], rtol=1e-10, atol=1e-12)
    assert eval_grads.keys() == tune_grads.keys()
    assert any(".bn" in name for name in eval_grads)  # gamma and beta of the backbone's BN train
    for name in eval_grads:
        noise = (nudged_grads[name] - eval_grads[name]).abs().max().item()
        torch.testing.assert_close(tune_grads[name], eval_grads[name], rtol=1e-9, atol=1e-11 + 10 * noise, msg=name)
    assert tune_kept < 0.8 * eval_kept


def test_frozen_mode_keeps_bn_affine_fixed(source_weights):
    model = build_detector("fasterrcnn", "resnet18", 11, "frozen", SIZE, fpn_channels=32,
                           pretrained=str(source_weights["fasterrcnn"]))
    frozen = [module for module in model.backbone.body.modules() if type(module).__name__ == "FrozenBatchNorm2d"]
    assert len(frozen) == 20 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    state = torch.load(source_weights["fasterrcnn"])
    assert torch.equal(model.backbone.body.bn1.running_var, state["backbone.body.bn1.running_var"])


def test_eval_mode_keeps_running_statistics(source_weights):
    model = build_detector("retinanet", "resnet18", 11, "eval", SIZE, fpn_channels=32,
                           pretrained=str(source_weights["retinanet"]))
    model.train()
    before = model.backbone.body.bn1.running_mean.clone()
    images, targets = batch()
    sum(model(images, targets).values()).backward()
    assert torch.equal(model.backbone.body.bn1.running_mean, before)
    assert model.backbone.body.bn1.weight.grad is not None


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.startswith("error:")]
    assert len(lines) == 1, captured
    return lines[0]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--detector", "yolo", "invalid choice: 'yolo'"),
    ("-a", "vgg16", "detection backbones are"),
    ("-s", "X", "-s X"),
    ("-d", "imagenet", "unknown detection dataset"),
])
def test_bad_options_stop_with_one_line(option, value, message, tmp_path, capsys):
    argv = scenes_args(tmp_path / "run", "--scratch")
    argv[argv.index(option) if option in argv else len(argv):][:2] = []
    with pytest.raises(SystemExit) as stop:
        engine.main(Detection, [*argv, option, value])
    assert stop.value.code == 2 and message in error_line(capsys)
    assert not (tmp_path / "run").exists()


def write_coco(root, boxes=((4, 4, 20, 20),), empty_image=False, annotations=True):
    """A COCO-format folder: two 32-px images in train2017 and val2017, one box each."""
    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True)
        images, objects = [], []
        for index in range(2):
            path = root / split / f"{index}.png"
            if empty_image and index == 0:
                path.write_bytes(b"")
            else:
                Image.new("RGB", (32, 32), (index * 100, 0, 0)).save(path)
            images.append({"id": index + 1, "file_name": path.name, "width": 32, "height": 32})
            for number, box in enumerate(boxes):
                objects.append({"id": 10 * index + number + 1, "image_id": index + 1, "category_id": 1,
                                "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0})
        if annotations:
            (root / "annotations").mkdir(exist_ok=True)
            (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
                {"images": images, "annotations": objects, "categories": [{"id": 1, "name": "square"}]}))
    return root


def coco_args(root, run_dir):
    return [str(root), "-d", "coco", *TINY, "--scratch", "--log", str(run_dir)]


@pytest.mark.parametrize(("problem", "message"), [
    ({"annotations": False}, "instances_train2017.json is missing"),
    ({"boxes": ((20, 4, 20, 20),)}, "is not a box of positive size inside its 32 x 32 image"),
    ({"boxes": ((-1, 4, 10, 10),)}, "annotation 1 of 0.png"),
])
def test_bad_annotations_stop_before_training(problem, message, tmp_path, capsys, single_thread):
    root = write_coco(tmp_path / "coco", **problem)
    assert engine.main(Detection, coco_args(root, tmp_path / "run")) == 1
    assert message in error_line(capsys)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_empty_image_stops_the_run(tmp_path, capsys, single_thread):
    root = write_coco(tmp_path / "coco", empty_image=True)
    assert engine.main(Detection, coco_args(root, tmp_path / "run")) == 1
    line = error_line(capsys)
    assert "unreadable images" in line and "0.png" in line


@pytest.mark.slow
@pytest.mark.parametrize("mode", DETECTION_BN_MODES)
def test_short_run_per_bn_mode(mode, source_weights, tmp_path, single_thread):
    run_dir = tmp_path / mode
    argv = scenes_args(run_dir, "--pretrained", str(source_weights["fasterrcnn"]), "--bn-mode", mode)
    assert engine.main(Detection, argv) == 0
    logged = scalars(run_dir)
    for tag in ("eval/map", "eval/map50", "eval/best_map50", "memory/kept_for_backward_mib",
                "memory/step_peak_mib", "time/iter_s", "train/loss", "train/loss_classifier"):
        assert tag in logged, tag
    results = json.loads((run_dir / "results.json").read_text())
    assert results["best_map50"] == pytest.approx(logged["eval/best_map50"][-1][1])
    assert 0 <= results["map"] <= results["map50"] <= 1


@pytest.mark.slow
def test_resume_is_exact(source_weights, tmp_path, single_thread):
    weights = ["--pretrained", str(source_weights["retinanet"]), "--detector", "retinanet", "--bn-mode", "tune"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert engine.main(Detection, [*scenes_args(whole, *weights), "--epochs", "2"]) == 0
    assert engine.main(Detection, [*scenes_args(parts, *weights), "--epochs", "1"]) == 0
    assert engine.main(Detection, [*scenes_args(parts, *weights), "--epochs", "2", "--resume", str(parts)]) == 0
    reference, resumed = saved_model(whole), saved_model(parts)
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[key], resumed[key]) for key in reference)
    assert json.loads((whole / "results.json").read_text())["map50"] == \
        json.loads((parts / "results.json").read_text())["map50"]
    assert scalars(whole)["train/loss"] == scalars(parts)["train/loss"]


@pytest.mark.parametrize(("detector", "arch"), [("fasterrcnn", "mobilenet_v3_large"), ("fcos", "resnet50")])
def test_other_backbones_convert_and_train(detector, arch, single_thread):
    """MobileNetV3-FPN and ResNet-50-FPN: every BN of the backbone is in a converted pair, a Tune step trains
    gamma."""
    reports = []
    model = build_detector(detector, arch, 11, "tune", SIZE, fpn_channels=32, report=reports.append)
    bns = sum(isinstance(module, torch.nn.BatchNorm2d) for module in model.backbone.body.modules())
    assert bns > 40 and f"{bns} Conv->BN pairs converted, 0 BN layers left" in reports[0]
    model.train()
    images, targets = batch()
    sum(model(images, targets).values()).backward()
    assert all(bn.weight.grad is not None for bn in model.backbone.body.modules()
               if isinstance(bn, torch.nn.BatchNorm2d) and bn.weight.requires_grad)
