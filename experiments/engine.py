"""The training engine every method runs on, with TLlib's command line.

It builds the model (backbone in the paper's BN mode, optional bottleneck, head), one SGD optimizer with the
backbone at 0.1x lr and a per-iteration schedule, then trains with TensorBoard logging of losses, wall-clock and
memory, evaluates on the target every epoch, and checkpoints atomically so that --resume reproduces an
uninterrupted run exactly. Each method module is an entry point:

    python -m experiments.dann data/office31 -d office31 -s A -t W -a resnet50 --bn-mode tune
    torchrun --nproc_per_node=4 -m experiments.dann ... --log-dir DIR   # DDP: the global batch is 4 x -b

A finished run leaves results.json in its run directory; checkpoint.pt holds the last epoch (or the iteration a
SIGINT/SIGTERM stopped at).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import datasets
import tune
from datasets.registry import canonical_name
from experiments import checkpoint, data
from experiments.method import Method
from experiments.models import BN_MODES, Classifier, apply_bn_mode, build_backbone, parameter_groups
from experiments.utils import (
    ExperimentError,
    WindowMeter,
    init_distributed,
    is_distributed,
    peak_memory_mib,
    reset_peak_memory,
    rng_state,
    seed_everything,
    set_rng_state,
    synchronize,
)

RESULTS = "results.json"  # written when a run finishes: the marker sweep scripts skip finished runs by
# Options that may differ when resuming; any other difference means a different experiment.
RESUMABLE_CHANGES = {"root", "download", "epochs", "log", "workers", "print_freq", "device", "resume", "phase"}


class NonFiniteLossError(ExperimentError):
    """The loss became NaN or infinite; training stops before the bad step is applied."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the run after a checkpoint was saved."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def _dataset_name(name: str) -> str:
    try:
        return canonical_name(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def get_args_parser(method: type[Method]) -> argparse.ArgumentParser:
    """The shared options (TLlib's names and defaults) plus the method's own."""
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{method.name}",
        description=method.__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("root", help="root folder of the dataset")
    parser.add_argument("-d", "--data", type=_dataset_name, required=True, help=f"one of {', '.join(datasets.NAMES)}")
    parser.add_argument("-s", "--source", help="source domain (domain-adaptation benchmarks)")
    parser.add_argument("-t", "--target", help="target domain (domain-adaptation benchmarks)")
    parser.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    parser.add_argument("--resize-size", type=int, default=256, help="images are resized to this square first")
    parser.add_argument("--crop-size", type=int, default=224, help="crop size for training and evaluation")
    parser.add_argument("--no-train-resize", action="store_true",
                        help="random-crop the original image (TLlib's fine-tuning recipe), not the resized square")
    parser.add_argument("--center-crop", action="store_true", help="center crop for training too (VisDA-2017)")
    parser.add_argument("--scale", type=float, nargs=2, default=[0.08, 1.0], metavar=("LOW", "HIGH"),
                        help="area range of RandomResizedCrop")
    parser.add_argument("--per-class-eval", action="store_true",
                        help="also log mean per-class accuracy (always on for visda2017)")

    model = parser.add_argument_group("model")
    model.add_argument("-a", "--arch", default="resnet50", help="torchvision model name, or timm:NAME")
    weights = model.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", metavar="PATH", help="backbone weights from a local checkpoint")
    weights.add_argument("--scratch", action="store_true", help="random backbone weights (backbone lr 1x)")
    model.add_argument("--bn-mode", choices=BN_MODES, default="train",
                       help="BN of the pretrained backbone: train (batch stats), eval (running stats), tune (eval "
                            "computed as folded convs: less memory), deploy (folded for good: unstable)")
    model.add_argument("--bottleneck-dim", type=int, default=256, help="bottleneck size (adversarial methods)")
    model.add_argument("--trade-off", type=float, default=1.0, help="weight of the transfer loss")

    training = parser.add_argument_group("training")
    training.add_argument("-b", "--batch-size", type=int, default=32,
                          help="batch per process and domain; under torchrun the global batch is N x this")
    training.add_argument("--lr", type=float, default=0.01, help="base learning rate (backbone: 0.1x)")
    training.add_argument("--lr-gamma", type=float, default=0.001,
                          help="lr x (1 + gamma i)^-decay per iteration i; with --lr-decay-epochs: the step factor")
    training.add_argument("--lr-decay", type=float, default=0.75, help="exponent of the per-iteration schedule")
    training.add_argument("--lr-decay-epochs", type=int, nargs="+", metavar="EPOCH",
                          help="step schedule instead: multiply the lr by --lr-gamma at these epochs")
    training.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    training.add_argument("--wd", "--weight-decay", type=float, default=1e-3, dest="wd", help="weight decay")
    training.add_argument("--epochs", type=int, default=20)
    training.add_argument("-i", "--iters-per-epoch", type=int, default=1000)
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("-j", "--workers", type=int, default=2, help="data-loading worker processes")
    training.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")

    run = parser.add_argument_group("run")
    run.add_argument("--log", "--log-dir", type=Path,
                     help="run directory (default logs/<dataset>/<task>/<method>/<bn-mode>/seed<seed>); under "
                          "torchrun write --log-dir, since torchrun's own options make --log ambiguous")
    run.add_argument("--print-freq", type=int, default=100, help="iterations per logging window")
    run.add_argument("--resume", type=Path, metavar="PATH",
                     help="checkpoint file or run directory to continue from (or to test with --phase test)")
    run.add_argument("--phase", choices=("train", "test"), default="train",
                     help="test: only evaluate the --resume checkpoint (default: the run directory's)")
    method.add_arguments(parser)
    return parser


def parse_args(method: type[Method], argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; fill in the default run directory."""
    parser = get_args_parser(method)
    args = parser.parse_args(argv)
    domains = datasets.domains(args.data)
    if domains:
        if not (args.source and args.target):
            parser.error(f"{args.data} is a domain-adaptation benchmark: pass -s and -t (domains: {domains})")
    elif method.adapts:
        parser.error(f"{method.name} adapts between domains, but {args.data} has none: use finetune")
    elif args.source or args.target:
        parser.error(f"{args.data} is a fine-tuning dataset without domains: drop -s/-t")
    if args.log is None:
        task = f"{args.source}2{args.target}" if domains else args.data
        args.log = Path("logs", args.data, task, method.name, args.bn_mode, f"seed{args.seed}")
    return args


def main(method: type[Method], argv: list[str] | None = None) -> int:
    """Command-line entry point of every method: returns the exit status; user errors print without traceback."""
    args = parse_args(method, argv)
    try:
        return run(method, args)
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        return 128 + stop.signum
    except (ExperimentError, datasets.DatasetNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except torch.OutOfMemoryError:
        print(f"error: out of GPU memory with -b {args.batch_size} and --bn-mode {args.bn_mode}: try "
              f"--bn-mode tune (it keeps less for backward) or a smaller -b", file=sys.stderr)
        return 1
    finally:
        if is_distributed():
            dist.destroy_process_group()


def lr_lambda(args: argparse.Namespace) -> Callable[[int], float]:
    """lr factor at iteration i: TLlib's inverse decay, or steps of --lr-gamma at --lr-decay-epochs."""
    if args.lr_decay_epochs:
        milestones = sorted(epoch * args.iters_per_epoch for epoch in args.lr_decay_epochs)
        return lambda i: args.lr_gamma ** bisect.bisect_right(milestones, i)
    return lambda i: (1 + args.lr_gamma * i) ** -args.lr_decay


class GracefulStop:
    """While active, SIGINT/SIGTERM ask the training loop to stop after the current iteration and save.

    A second Ctrl-C raises KeyboardInterrupt at once (nothing saved).
    """

    def __init__(self) -> None:
        self.signum = 0

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"\n{signal.Signals(signum).name}: stopping after this iteration to save a checkpoint "
              f"(Ctrl-C again aborts without saving)", file=sys.stderr)

    def __enter__(self) -> GracefulStop:
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def build_model(method_cls: type[Method], args: argparse.Namespace, num_classes: int, verbose: bool) -> Method:
    """Backbone in --bn-mode (tune's report printed when `verbose`), classifier and method around it."""
    backbone, backbone_dim = build_backbone(args.arch, args.pretrained, args.scratch)
    report = apply_bn_mode(backbone, args.bn_mode)
    if report is not None and verbose:
        print(report)
    bottleneck_dim = args.bottleneck_dim if method_cls.bottleneck else 0
    return method_cls(Classifier(backbone, backbone_dim, num_classes, bottleneck_dim), args)


def run(method_cls: type[Method], args: argparse.Namespace) -> int:
    """Build everything from `args`, restore --resume, then train (or only test); returns the exit status."""
    rank, world_size, device = init_distributed(args.device)
    seed_everything(args.seed)
    state = _load_state(method_cls, args, world_size)
    step = state["step"] if state and args.phase == "train" else 0
    task = data.build(args, method_cls.adapts, step, rank, world_size)
    model = build_model(method_cls, args, task.num_classes, verbose=rank == 0).to(device)
    if state is not None:
        model.load_state_dict(state["model"])
    if args.phase == "test":
        accuracy, mean_class = evaluate(model.classifier, task.test, task.num_classes, device, rank == 0)
        if rank == 0:
            print(f"{task.task}: target accuracy {accuracy:.2f}%"
                  + (f", mean per-class {mean_class:.2f}%" if task.per_class else ""))
        return 0
    Trainer(model, task, args, device, rank, world_size, state).fit()
    return 0


def _load_state(method_cls: type[Method], args: argparse.Namespace, world_size: int) -> dict | None:
    """The checkpoint to continue from (--resume; for --phase test the run directory's by default), checked to
    belong to this experiment; None for a fresh run, which must not overwrite another run's directory."""
    if args.phase == "test":
        return checkpoint.load(checkpoint.resolve(args.resume or args.log))
    if args.resume is None:
        if any((args.log / name).exists() for name in (checkpoint.FILENAME, RESULTS)):
            raise ExperimentError(f"{args.log} already holds a run: continue it with --resume {args.log}, or "
                                  f"pick another --log")
        return None
    state = checkpoint.load(checkpoint.resolve(args.resume))
    saved = dict(state["args"], method=state["config"]["method"], world_size=state["config"]["world_size"])
    now = dict(_plain(args), method=method_cls.name, world_size=world_size)
    differences = [f"{key}: {saved.get(key)!r} -> {now.get(key)!r}" for key in sorted(saved.keys() | now.keys())
                   if key not in RESUMABLE_CHANGES and saved.get(key) != now.get(key)]
    if differences:
        raise checkpoint.CheckpointError(f"{args.resume} is from a different experiment: " + "; ".join(differences))
    return state


class Trainer:
    """One run's training state (model, optimizer, schedule, data streams, global step, scores) and its loop.

    Only rank 0 writes TensorBoard events, checkpoints and the console. `step` counts finished iterations.
    """

    def __init__(self, model: Method, task: data.TaskData, args: argparse.Namespace, device: torch.device,
                 rank: int, world_size: int, state: dict | None) -> None:
        self.model, self.task, self.args, self.device = model, task, args, device
        self.world_size, self.main = world_size, rank == 0
        backbone = model.classifier.backbone
        self.optimizer = torch.optim.SGD(
            parameter_groups(model, backbone, args.lr, 1.0 if args.scratch else 0.1),
            lr=args.lr, momentum=args.momentum, weight_decay=args.wd, nesterov=True,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(args))
        self.step, self.saved_step = 0, None
        self.scores = {"target_acc": 0.0, "best_target_acc": 0.0, "best_target_mean_class_acc": 0.0}
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = self.saved_step = state["step"]
            self.scores = state["scores"]
        self.trained = model
        if world_size > 1:
            self.trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        self.config = {
            "method": model.name, "dataset": args.data, "task": task.task, "arch": args.arch,
            "bn_mode": args.bn_mode, "batch_size": args.batch_size, "world_size": world_size, "seed": args.seed,
            "epochs": args.epochs, "iters_per_epoch": args.iters_per_epoch, "lr": args.lr, "device": str(device),
            "torch": str(torch.__version__), "crop_size": args.crop_size,
            "weights": "scratch" if args.scratch else args.pretrained or "imagenet",
        }
        self.writer = None
        if self.main:
            args.log.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(args.log), purge_step=self.step if state else None)
            if state is None:
                self.writer.add_text("config", json.dumps(self.config))
            print(f"{model.name} {task.task} --bn-mode {args.bn_mode}: logging to {args.log}"
                  + (f", resuming at iteration {self.step}" if state else ""))
        self.source = iter(task.source)
        self.target = iter(task.target) if task.target is not None else None
        self.meter = WindowMeter()
        if state is not None:  # last, so that nothing above draws from the restored generators
            set_rng_state(state["rng"])

    def fit(self) -> None:
        """Train the remaining epochs, evaluating and checkpointing after each, then write the final results."""
        args = self.args
        try:
            with GracefulStop() as stop:
                for epoch in range(self.step // args.iters_per_epoch, args.epochs):
                    self.train_one_epoch(epoch, stop)
                    if self.step < (epoch + 1) * args.iters_per_epoch:  # a signal stopped it mid-epoch
                        self.save()
                        raise self._interrupted(stop.signum)
                    self.evaluate_epoch(epoch)
                    self.save()
                    if stop.signum and epoch + 1 < args.epochs:
                        raise self._interrupted(stop.signum)
            if self.main:
                self._write_results()
        finally:
            if self.writer is not None:
                self.writer.close()

    def _write_results(self) -> None:
        """The best scores as final scalars, and results.json: the marker of a finished run."""
        last_epoch = self.args.epochs - 1
        self.writer.add_scalar("eval/best_target_acc", self.scores["best_target_acc"], last_epoch)
        if self.task.per_class:
            self.writer.add_scalar("eval/best_target_mean_class_acc", self.scores["best_target_mean_class_acc"],
                                   last_epoch)
        self.writer.flush()
        results = {"config": self.config, "iterations": self.step, **self.scores}
        _write_atomically(self.args.log / RESULTS, json.dumps(results, indent=2))
        print(f"done: best target accuracy {self.scores['best_target_acc']:.2f}% ({self.args.log / RESULTS})")

    def train_one_epoch(self, epoch: int, stop: GracefulStop) -> None:
        """Train from the current step to the end of `epoch`, or until a signal asks to stop.

        Every --print-freq iterations the window's means go to TensorBoard (step = global iteration) and the
        console. The very first iteration also measures what autograd keeps for backward.
        """
        args, device = self.args, self.device
        self.model.train()
        end_of_epoch = (epoch + 1) * args.iters_per_epoch
        progress = tqdm(total=args.iters_per_epoch, initial=self.step % args.iters_per_epoch, desc=f"epoch {epoch}",
                        leave=False, disable=None if self.main else True)  # None: shown on a terminal only
        synchronize(device)
        end = time.perf_counter()
        while self.step < end_of_epoch:
            x_s, y_s = (t.to(device, non_blocking=True) for t in next(self.source))
            x_t = next(self.target)[0].to(device, non_blocking=True) if self.target is not None else None
            data_time = time.perf_counter() - end
            probe = tune.kept_for_backward(exclude=self.model) if self.step == 0 else contextlib.nullcontext()
            with probe:
                loss, figures = self.trained(x_s, y_s, x_t)
            values = torch.stack([loss.detach(), *(v.detach().float() for v in figures.values()),
                                  torch.tensor(float(stop.signum), device=device)])
            if self.world_size > 1:  # one collective: global means to log, and all ranks stop at the same step
                dist.all_reduce(values)
                values /= self.world_size
            loss_value, *numbers, stop_requested = values.tolist()
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"loss is {loss_value} at iteration {self.step} (epoch {epoch}): stopped before applying it. "
                    f"Last good checkpoint: "
                    + (f"{args.log / checkpoint.FILENAME} (iteration {self.saved_step}), kept as it was"
                       if self.saved_step is not None else "none yet")
                    + ". Try a lower --lr."
                )
            lr = self.optimizer.param_groups[-1]["lr"]  # the head's (1x) group, as used in this step
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.step == 0 and self.main:
                self.writer.add_scalar("memory/kept_for_backward_mib", probe.nbytes / 2**20, 0)
                tqdm.write(f"autograd keeps {probe.nbytes / 2**20:.1f} MiB for backward (first step)")
            window_ends = (self.step + 1) % args.print_freq == 0
            if window_ends:
                synchronize(device)
            now = time.perf_counter()
            self.meter.update({"loss": loss_value, **dict(zip(figures, numbers, strict=True)), "lr": lr,
                               "iter_s": now - end, "data_s": data_time})
            end = now
            if window_ends:
                self._log_window(epoch)
            self.step += 1
            progress.update()
            if stop_requested:
                break
        progress.close()

    def _log_window(self, epoch: int) -> None:
        """Write the window's means at the current step and a console line; start a new window."""
        means = self.meter.means()
        memory = peak_memory_mib(self.device)
        reset_peak_memory(self.device)
        self.meter.reset()
        if not self.main:
            return
        for name in ("loss", "cls_loss", "transfer_loss", "source_acc", "domain_acc", "lr"):
            if name in means:
                self.writer.add_scalar(f"train/{name}", means[name], self.step)
        self.writer.add_scalar("time/iter_s", means["iter_s"], self.step)
        self.writer.add_scalar("time/data_s", means["data_s"], self.step)
        self.writer.add_scalar("memory/peak_mib", memory, self.step)
        shown = " ".join(f"{name} {means[name]:.3f}" for name in ("loss", "cls_loss", "transfer_loss",
                                                                 "source_acc", "domain_acc") if name in means)
        tqdm.write(f"Epoch [{epoch}][{self.step % self.args.iters_per_epoch + 1}/{self.args.iters_per_epoch}] "
                   f"{shown} lr {means['lr']:.2e} time {means['iter_s']:.3f}s data {means['data_s']:.3f}s "
                   f"mem {memory:.0f}MiB")

    def evaluate_epoch(self, epoch: int) -> None:
        """Evaluate on the target (test split), log it at step = epoch and update the best scores."""
        accuracy, mean_class = evaluate(self.model.classifier, self.task.test, self.task.num_classes, self.device,
                                        self.main)
        scores = self.scores
        scores.update(target_acc=accuracy, best_target_acc=max(scores["best_target_acc"], accuracy),
                      best_target_mean_class_acc=max(scores["best_target_mean_class_acc"], mean_class))
        if self.main:
            self.writer.add_scalar("eval/target_acc", accuracy, epoch)
            if self.task.per_class:
                self.writer.add_scalar("eval/target_mean_class_acc", mean_class, epoch)
            self.writer.flush()
            tqdm.write(f"Epoch [{epoch}] target acc {accuracy:.2f}% (best {scores['best_target_acc']:.2f}%)"
                       + (f", mean per-class {mean_class:.2f}%" if self.task.per_class else ""))

    def save(self) -> None:
        """Checkpoint everything resuming needs (rank 0; atomic, so the previous one survives a crash)."""
        if self.main:
            checkpoint.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                             "scheduler": self.scheduler.state_dict(), "step": self.step, "scores": self.scores,
                             "rng": rng_state(), "config": self.config, "args": _plain(self.args)},
                            self.args.log / checkpoint.FILENAME)
        self.saved_step = self.step

    def _interrupted(self, signum: int) -> Interrupted:
        return Interrupted(f"{signal.Signals(signum).name}: stopped at iteration {self.step}; checkpoint saved in "
                           f"{self.args.log}. Continue with the same command plus --resume {self.args.log}", signum)


@torch.no_grad()
def evaluate(classifier: Classifier, loader: DataLoader, num_classes: int, device: torch.device,
             show_progress: bool) -> tuple[float, float]:
    """Top-1 accuracy and mean per-class accuracy (percent) over the loader (its shards summed across ranks)."""
    classifier.eval()
    correct = torch.zeros(num_classes, device=device)
    total = torch.zeros(num_classes, device=device)
    for images, labels in tqdm(loader, desc="eval", leave=False, disable=None if show_progress else True):
        labels = labels.to(device)
        hits = classifier(images.to(device))[0].argmax(1) == labels
        total += torch.bincount(labels, minlength=num_classes)
        correct += torch.bincount(labels[hits], minlength=num_classes)
    if is_distributed():
        dist.all_reduce(correct)
        dist.all_reduce(total)
    seen = total > 0
    accuracy = (correct.sum() / total.sum().clamp_min(1)).item() * 100
    mean_class = (correct[seen] / total[seen]).mean().item() * 100 if seen.any() else 0.0
    return accuracy, mean_class


def _plain(args: argparse.Namespace) -> dict:
    """The options as plain values (paths as text), as checkpoints store and compare them."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
