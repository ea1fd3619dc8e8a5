"""The command line every method shares: TLlib's option names, meanings and defaults, checked when parsed.

Values no run could use (a batch of 0, an unknown domain, CUDA on a machine without it) stop here, before anything
is built, with one line `error: ...`. The method adds its own options (and its defaults for shared ones).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import datasets
from datasets.registry import DOMAIN_SETS
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, TRAIN_RESIZING, VAL_RESIZING
from experiments.argtypes import fraction, non_negative_int, positive_int

if TYPE_CHECKING:
    from experiments.method import Method

BAD_IMAGE_LIMIT = 0.01


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `error: ...`, with exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def device_name(text: str) -> str:
    """argparse type: a torch device this machine has."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: this machine has no usable CUDA GPU (torch "
                                         f"{torch.__version__}, CUDA {torch.version.cuda}): use --device cpu")
    return text


def dataset_name(text: str) -> str:
    """argparse type: a dataset name, normalised (Office-31 -> office31)."""
    try:
        return datasets.canonical_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def get_args_parser(method: type[Method]) -> argparse.ArgumentParser:
    """The shared options (TLlib's names and defaults) plus the method's own; every option has a help text, so
    --help shows every default."""
    parser = Parser(prog=f"python -m experiments.{method.name}", description=method.__doc__,
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("root", help="root folder of the dataset")
    data.add_argument("-d", "--data", dest="dataset", type=method.dataset_type, required=True,
                      help=f"one of {', '.join(method.dataset_names)}")
    data.add_argument("-s", "--source", help="source domain (domain-adaptation benchmarks)")
    data.add_argument("-t", "--target", help="target domain (domain-adaptation benchmarks)")
    data.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    data.add_argument("--train-resizing", choices=TRAIN_RESIZING, default="default",
                      help="training crops: default = resize to a square of 256/224 x --resize-size, then "
                           "RandomResizedCrop; cen.crop / ran.crop = center / random crop of that square (cen.crop: "
                           "VisDA-2017); res. = resize to --resize-size; inc.crop = RandomResizedCrop of the original "
                           "image (TLlib's fine-tuning recipe)")
    data.add_argument("--val-resizing", choices=VAL_RESIZING, default="default",
                      help="evaluation: default = resize to a square of 256/224 x --resize-size, then center crop; "
                           "res. = resize to --resize-size")
    data.add_argument("--resize-size", type=positive_int, default=224,
                      help="size of the images fed to the network")
    data.add_argument("--scale", type=float, nargs=2, default=[0.08, 1.0], metavar=("LOW", "HIGH"),
                      help="area range of RandomResizedCrop")
    data.add_argument("--ratio", type=float, nargs=2, default=[3 / 4, 4 / 3], metavar=("LOW", "HIGH"),
                      help="aspect-ratio range of RandomResizedCrop")
    data.add_argument("--no-hflip", action="store_true", help="no random horizontal flip in training")
    data.add_argument("--norm-mean", type=float, nargs=3, default=list(IMAGENET_MEAN), metavar=("R", "G", "B"),
                      help="normalisation mean")
    data.add_argument("--norm-std", type=float, nargs=3, default=list(IMAGENET_STD), metavar=("R", "G", "B"),
                      help="normalisation standard deviation")
    data.add_argument("--per-class-eval", action="store_true",
                      help="also log mean per-class accuracy (always on for visda2017)")
    data.add_argument("--bad-image-limit", type=fraction, default=BAD_IMAGE_LIMIT, metavar="FRACTION",
                      help="unreadable images are skipped and logged; the run stops (with a checkpoint) once more "
                           "than this fraction of its images are unreadable")

    model = parser.add_argument_group("model")
    model.add_argument("-a", "--arch", default="resnet50", help="torchvision model name, or timm:NAME")
    weights = model.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", metavar="PATH", help="backbone weights from a local checkpoint")
    weights.add_argument("--scratch", action="store_true", help="random backbone weights (backbone lr 1x)")
    model.add_argument("--bn-mode", choices=method.bn_modes, default="train",
                       help="BN of the pretrained backbone: train (batch stats), eval (running stats), tune (eval "
                            "computed as folded convs: less memory), deploy (folded for good: unstable)")
    method.add_arguments(parser.add_argument_group(f"{method.name}"))

    training = parser.add_argument_group("training")
    training.add_argument("-b", "--batch-size", type=positive_int, default=32,
                          help="batch per process and domain; under torchrun the global batch is N x this")
    training.add_argument("--lr", type=float, default=0.01, help="base learning rate (backbone: 0.1x)")
    training.add_argument("--lr-gamma", type=float, default=0.001,
                          help="lr x (1 + gamma i)^-decay per iteration i; with --lr-decay-epochs: the step factor")
    training.add_argument("--lr-decay", type=float, default=0.75, help="exponent of the per-iteration schedule")
    training.add_argument("--lr-decay-epochs", type=positive_int, nargs="+", metavar="EPOCH",
                          help="step schedule instead: multiply the lr by --lr-gamma at these epochs")
    training.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    training.add_argument("--wd", "--weight-decay", type=float, default=1e-3, dest="wd", help="weight decay")
    training.add_argument("--epochs", type=positive_int, default=20, help="number of epochs")
    training.add_argument("-i", "--iters-per-epoch", type=positive_int, default=1000, help="iterations per epoch")
    training.add_argument("--seed", type=int, default=0, help="seed of every random number generator")
    training.add_argument("-j", "--workers", type=non_negative_int, default=2, help="data-loading worker processes")
    training.add_argument("--device", type=device_name, default="cuda" if torch.cuda.is_available() else "cpu",
                          help="cpu, cuda or cuda:N (under torchrun each rank takes its LOCAL_RANK's GPU)")

    run = parser.add_argument_group("run")
    run.add_argument("--log", "--log-dir", type=Path,
                     help="run directory (default logs/<dataset>/<task>/<method>/<bn-mode>/seed<seed>); under "
                          "torchrun write --log-dir, since torchrun's own options make --log ambiguous")
    run.add_argument("-p", "--print-freq", type=positive_int, default=100, help="iterations per logging window")
    run.add_argument("--resume", type=Path, metavar="PATH",
                     help="checkpoint file or run directory to continue from (or to test with --phase test)")
    run.add_argument("--phase", choices=("train", "test"), default="train",
                     help="test: only evaluate the --resume checkpoint (default: the run directory's)")
    parser.set_defaults(**method.defaults)
    return parser


def method_options(method: type[Method]) -> list[str]:
    """The names (argparse dests) of the options `method` adds: what it is built from."""
    probe = argparse.ArgumentParser(add_help=False)
    method.add_arguments(probe)
    return list(vars(probe.parse_args([])))


def parse_args(method: type[Method], argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; fill in the default run directory."""
    parser = get_args_parser(method)
    args = parser.parse_args(argv)
    method.check_args(parser, args)
    return args


def check_task(parser: argparse.ArgumentParser, method: type[Method], args: argparse.Namespace) -> None:
    """A classification task: the dataset's domains as -s/-t, or none; the default run directory."""
    spec = DOMAIN_SETS.get(args.dataset)
    if spec is not None:
        if not (args.source and args.target):
            parser.error(f"{args.dataset} is a domain-adaptation benchmark: pass -s and -t (domains: "
                         f"{list(spec.folders)})")
        for option, domain in (("-s", args.source), ("-t", args.target)):
            try:
                spec.resolve(domain)
            except ValueError as error:
                parser.error(f"{option}: {error}")
    elif method.adapts:
        parser.error(f"{method.name} adapts between domains, but {args.dataset} has none: use finetune")
    elif args.source or args.target:
        parser.error(f"{args.dataset} is a fine-tuning dataset without domains: drop -s/-t")
    if args.log is None:
        task = f"{args.source}2{args.target}" if spec else args.dataset
        args.log = Path("logs", args.dataset, task, method.name, args.bn_mode, f"seed{args.seed}")


def task_name(args: argparse.Namespace) -> str:
    """"A->W" for domain adaptation, the dataset's name for fine-tuning."""
    return f"{args.source}->{args.target}" if args.source else args.dataset
