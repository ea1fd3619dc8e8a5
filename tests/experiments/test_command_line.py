"""The command line speaks TLlib: its option names and meanings (--resize-size is the size fed to the network,
--train-resizing/--val-resizing its modes, -p), and every option has a help text that shows its default."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from datasets.transforms import TRAIN_RESIZING, VAL_RESIZING, square_size, train_transform, val_transform
from experiments import options
from experiments.cdan import CDAN
from experiments.dann import DANN
from experiments.finetune import FineTune
from tests.experiments.helpers import ENV, REPO


@pytest.mark.parametrize("method", [FineTune, DANN, CDAN])
def test_every_option_has_a_help_text_showing_its_default(method):
    parser = options.get_args_parser(method)
    for action in parser._actions:
        assert action.help, action.dest
    text = parser.format_help()
    assert "(default: 224)" in text and "(default: 100)" in text and "(default: default)" in text


def test_tllib_option_names_and_meanings():
    args = options.parse_args(FineTune, [
        "root", "-d", "Office-31", "-s", "A", "-t", "W", "-p", "7", "--resize-size", "160", "--train-resizing",
        "cen.crop", "--val-resizing", "res.", "--no-hflip", "--scale", "0.2", "1", "--ratio", "0.5", "2",
        "--norm-mean", "0.5", "0.5", "0.5", "--norm-std", "0.25", "0.25", "0.25"])
    assert (args.dataset, args.print_freq, args.resize_size) == ("office31", 7, 160)
    assert (args.train_resizing, args.val_resizing, args.no_hflip) == ("cen.crop", "res.", True)
    assert (args.scale, args.ratio, args.norm_mean, args.norm_std) == ([0.2, 1], [0.5, 2], [0.5] * 3, [0.25] * 3)
    defaults = options.parse_args(DANN, ["root", "-d", "office31", "-s", "A", "-t", "W"])
    assert (defaults.resize_size, defaults.train_resizing, defaults.val_resizing) == (224, "default", "default")
    assert str(defaults.log) == "logs/office31/A2W/dann/train/seed0"


@pytest.mark.parametrize("size", [224, 64])
def test_every_resizing_mode_feeds_the_network_images_of_resize_size(size):
    picture = Image.new("RGB", (300, 180), (10, 200, 30))
    for mode in TRAIN_RESIZING:
        assert train_transform(mode, size)(picture).shape == (3, size, size), mode
    for mode in VAL_RESIZING:
        assert val_transform(mode, size)(picture).shape == (3, size, size), mode
    assert square_size(224) == 256
    first = train_transform("default", size).transforms[0]
    assert isinstance(first, T.Resize) and first.size == (square_size(size),) * 2  # TLlib's square, then the crop
    assert isinstance(train_transform("inc.crop", size).transforms[0], T.RandomResizedCrop)


def test_flip_and_normalisation_follow_the_options():
    assert not any(isinstance(step, T.RandomHorizontalFlip) for step in train_transform(hflip=False).transforms)
    out = val_transform("res.", 8, norm_mean=(0.5,) * 3, norm_std=(0.5,) * 3)(Image.new("RGB", (8, 8), (255,) * 3))
    assert torch.allclose(out, torch.ones(3, 8, 8))


@pytest.mark.slow
def test_help_does_not_import_timm():
    shown = ("import runpy, sys\nsys.argv = ['finetune', '--help']\ntry:\n"
             "    runpy.run_module('experiments.finetune', run_name='__main__')\nexcept SystemExit:\n"
             "    print('timm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", shown], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--bn-mode" in done.stdout, done.stderr
    assert done.stdout.splitlines()[-1] == "False"
