"""The training engine every method runs on, with TLlib's protocol and command line (experiments/options.py).

It builds the model (backbone in the paper's BN mode, the method's classifier and losses) and TLlib's optimizer,
then trains in the manner of torchvision's reference loop (fetch, step, log, stop), logging every figure the method
returns, wall-clock and memory to TensorBoard; it evaluates on the target every epoch and checkpoints so that
--resume reproduces an uninterrupted run exactly:

    python -m experiments.dann data/office31 -d office31 -s A -t W -a resnet50 --bn-mode tune
    torchrun --nproc_per_node=4 -m experiments.dann ... --log-dir DIR   # DDP: the global batch is 4 x -b

The run directory (experiments/rundir.py) holds config.json, log.txt, the TensorBoard events, checkpoint.pt (the
last epoch, or where a SIGINT/SIGTERM stopped the run) and, once finished, results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import datasets
import tune
from experiments import checkpoint, data, layout, optim, options, rundir, signals, textlog
from experiments.evaluation import evaluate
from experiments.memory import MIB, peak_memory_mib, reset_peak_memory, step_peak_mib
from experiments.method import Method
from experiments.textlog import LOG
from experiments.utils import (
    ExperimentError,
    WindowMeter,
    init_distributed,
    is_distributed,
    rng_state,
    seed_everything,
    set_rng_state,
    synchronize,
)

STARTING_OPTIONS = ("resume", "phase")  # how a process starts, not what the run is: not part of the config


class NonFiniteLossError(ExperimentError):
    """The loss became NaN or infinite; training stops before the bad step is applied."""


class Interrupted(ExperimentError):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def main(method: type[Method], argv: list[str] | None = None) -> int:
    """Command-line entry point of every method: returns the exit status; a user error prints one line."""
    quiet = int(os.environ.get("RANK", "0")) != 0  # under torchrun, only rank 0 reports progress
    with textlog.to_console(logging.WARNING if quiet else logging.INFO), signals.stop_at_once():
        try:
            args = options.parse_args(method, argv)
            command = [sys.executable, "-m", f"experiments.{method.name}", *(sys.argv[1:] if argv is None else argv)]
            return run(method, args, shlex.join(command))
        except Interrupted as stop:
            LOG.error(str(stop))
            return 128 + stop.signum
        except KeyboardInterrupt as stop:
            LOG.error(str(stop) or "SIGINT: stopped; nothing to save")
            return 128 + getattr(stop, "signum", signal.SIGINT)
        except ExperimentError as error:
            LOG.error(f"error: {error}")
            return 1
        except datasets.ImageReadError as error:  # every image of a dataset unreadable, from a loader worker
            LOG.error(f"error: {str(error).strip().splitlines()[-1].removeprefix('datasets.errors.ImageReadError: ')}")
            return 1
        except torch.OutOfMemoryError:
            LOG.error(f"error: out of GPU memory with -b {args.batch_size} and --bn-mode {args.bn_mode}: try "
                      f"--bn-mode tune (it keeps less for backward) or a smaller -b")
            return 1
        finally:
            if is_distributed():
                dist.destroy_process_group()


def run_config(method: type[Method], args: argparse.Namespace, world_size: int, device: torch.device) -> dict:
    """The run's one configuration: every option as a plain value, and what they imply."""
    plain = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
             if key not in STARTING_OPTIONS}
    return {"method": method.name, "task": method.task_name(args), **plain, "world_size": world_size,
            "device": str(device), "torch": str(torch.__version__)}


def run(method: type[Method], args: argparse.Namespace, command: str = "") -> int:
    """Train (or with --phase test only evaluate) as `args` (parsed from `command`) say; returns the exit status.

    Rank 0 owns the run directory from the start, so an unusable one fails before data and model are built.
    """
    rank, world_size, device = init_distributed(args.device)
    config = run_config(method, args, world_size, device)
    if args.phase == "test":
        return test(method, config, checkpoint.resolve(args.resume or args.log), device, rank, world_size)
    with contextlib.ExitStack() as stack:
        if rank == 0:
            stack.enter_context(rundir.owned(args.log))
            stack.enter_context(textlog.to_file(args.log))
        LOG.debug(f"command: {command}")
        state = rundir.starting_state(args.log, args.resume, config)
        if state is not None and rundir.finished(args.log, state, args.epochs, owner=rank == 0):
            return 0
        writer = rundir.prepare(args.log, config, state) if rank == 0 else None
        seed_everything(args.seed)
        task = method.build_data(config, state["step"] if state else 0, rank, world_size)
        model = build_model(method, config, task.num_classes, verbose=rank == 0).to(device)
        (method.trainer or Trainer)(model, task, config, device, rank, world_size, state, writer).fit()
    return 0


def build_model(method: type[Method], config: dict, num_classes: int, verbose: bool) -> Method:
    """Backbone in --bn-mode (tune's report shown when `verbose`), and the method built from its own options."""
    return method.from_config(config, num_classes, verbose)


def test(method: type[Method], config: dict, source: Path, device: torch.device, rank: int, world_size: int) -> int:
    """Only evaluate the checkpoint `source` on the target (test split) and print the accuracy."""
    state = checkpoint.load(source)
    task = method.build_data(config, 0, rank, world_size)
    model = build_model(method, config, task.num_classes, verbose=rank == 0).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise checkpoint.CheckpointError(f"{source} does not fit this model ({error})") from error
    unreadable = data.UnreadableImages(task.images, config["bad_image_limit"])
    accuracy, mean_class = evaluate(model.classifier, task.test, task.num_classes, device, rank == 0, unreadable)
    LOG.info(f"{config['task']}: target accuracy {accuracy:.2f}%"
             + (f", mean per-class {mean_class:.2f}%" if task.per_class else ""))
    return 0


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors moved to `device`, also inside lists, tuples and dicts (detection targets); anything else as is."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_device(item, device) for item in value)
    return value


class Trainer:
    """One run's training state (model, optimizer, schedule, data streams, step, scores, window) and its loop.

    Only rank 0 writes TensorBoard events, checkpoints and the console. `step` counts finished iterations,
    `evaluated_epochs` finished evaluations; a stop is agreed by all ranks (a signal, or too many bad images).
    """

    def __init__(self, model: Method, task: data.TaskData, config: dict, device: torch.device, rank: int,
                 world_size: int, state: dict | None, writer: SummaryWriter | None) -> None:
        self.model, self.task, self.config, self.device = model, task, config, device
        self.world_size, self.main, self.writer = world_size, rank == 0, writer
        self.run_dir, self.iters_per_epoch = Path(config["log"]), config["iters_per_epoch"]
        self.optimizer, self.scheduler = optim.build(model, config)
        self.step, self.evaluated_epochs, self.saved_step = 0, 0, None
        self.scores = {"target_acc": 0.0, "best_target_acc": 0.0, "best_target_mean_class_acc": 0.0}
        self.meter, self.stop, self.stopping = WindowMeter(), signals.GracefulStop(), False
        self.unreadable = data.UnreadableImages(task.images, config["bad_image_limit"],
                                                state["unreadable"] if state else None)
        if state is not None:
            self.load_state_dict(state)
        LOG.info(f"{model.name} {config['task']} --bn-mode {config['bn_mode']}: logging to {self.run_dir}"
                 + (f", resuming at iteration {self.step}" if state else ""))
        self.trained = model
        if world_size > 1:
            self.trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        self.source = iter(task.source)
        self.target = iter(task.target) if task.target is not None else None
        if state is not None:  # last, so that nothing above draws from the restored generators
            set_rng_state(state["rng"])

    def state_dict(self) -> checkpoint.Checkpoint:
        """Everything resuming needs: what a checkpoint holds."""
        return checkpoint.Checkpoint(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), step=self.step, evaluated_epochs=self.evaluated_epochs,
            scores=self.scores, rng=rng_state(), meter=self.meter.state_dict(), unreadable=self.unreadable.images,
            config=self.config)

    def load_state_dict(self, state: checkpoint.Checkpoint) -> None:
        """Continue where `state` (from state_dict) stopped; the data streams and the random number generators are
        restored in __init__, where their order matters, and the run's configuration by rundir.starting_state."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.meter.load_state_dict(state["meter"])
        self.step = self.saved_step = state["step"]
        self.evaluated_epochs, self.scores = state["evaluated_epochs"], state["scores"]

    def fit(self) -> None:
        """Train the remaining epochs, evaluating and checkpointing after each, then write the final results.

        A stop (signal, too many unreadable images) saves a checkpoint where the loop is and raises.
        """
        try:
            with self.stop:
                for epoch in range(self.evaluated_epochs, self.config["epochs"]):
                    self.train_one_epoch(epoch)
                    if not self.stopping:
                        self.evaluate_epoch(epoch)
                    self.save()
                    if self._agree_to_stop():
                        raise self._stop_error()
            if self.main:
                self._write_results()
        finally:
            self.source = self.target = None  # shuts the stream workers down
            if self.writer is not None:
                self.writer.close()

    def train_one_epoch(self, epoch: int) -> None:
        """Train from the current step to the end of `epoch`, or until all ranks agree to stop; log the window's
        means every --print-freq iterations. The very first step is also measured (probe_step)."""
        self.model.train()
        progress = tqdm(total=self.iters_per_epoch, initial=self.step % self.iters_per_epoch, desc=f"epoch {epoch}",
                        leave=False, disable=None if self.main else True)  # None: shown on a terminal only
        synchronize(self.device)
        end = time.perf_counter()
        while self.step < (epoch + 1) * self.iters_per_epoch and not self.stopping:
            x_s, y_s, x_t = self.next_batch()
            data_time = time.perf_counter() - end
            figures = self.probe_step(x_s, y_s, x_t) if self.step == 0 else self.train_step(x_s, y_s, x_t)
            window_ends = (self.step + 1) % self.config["print_freq"] == 0
            if window_ends:
                synchronize(self.device)
            now = time.perf_counter()
            self.meter.update({**figures, "iter_s": now - end, "data_s": data_time})
            end = now
            if window_ends:
                self.log_window(epoch)
            self.step += 1
            progress.update()
        progress.close()

    def next_batch(self) -> tuple[Tensor, Any, Tensor | None]:
        """The next source batch (images and labels: tensors, or lists of them and of detection targets) and target
        images, on the device; skipped images are noted."""
        x_s, y_s, skipped = next(self.source)
        self.unreadable.add(skipped)
        x_t = None
        if self.target is not None:
            x_t, _, skipped = next(self.target)
            self.unreadable.add(skipped)
            x_t = x_t.to(self.device, non_blocking=True)
        return to_device(x_s, self.device), to_device(y_s, self.device), x_t

    def train_step(self, x_s: Tensor, y_s: Tensor, x_t: Tensor | None,
                   forward_context: contextlib.AbstractContextManager | None = None) -> dict[str, float]:
        """One optimizer step: the method's loss and figures (means over ranks) and the lr it used. Their one
        all-reduce also carries each rank's wish to stop, so that all ranks stop after the same step."""
        with forward_context or contextlib.nullcontext():
            loss, figures = self.trained(x_s, y_s, x_t)
        values = torch.stack([loss.detach(), *(v.detach().float() for v in figures.values()), self._stop_flag()])
        if self.world_size > 1:
            dist.all_reduce(values)
            values /= self.world_size
        loss_value, *numbers, stop = values.tolist()
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"loss is {loss_value} at iteration {self.step}: stopped before applying it. Last good checkpoint: "
                + (f"{self.run_dir / checkpoint.FILENAME} (iteration {self.saved_step}), kept as it was"
                   if self.saved_step is not None else "none yet")
                + ". Try a lower --lr."
            )
        self.stopping = stop > 0
        lr = self.optimizer.param_groups[-1]["lr"]  # the head's (1x) group, as used in this step
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss_value, **dict(zip(figures, numbers, strict=True)), "lr": lr}

    def probe_step(self, x_s: Tensor, y_s: Tensor, x_t: Tensor | None) -> dict[str, float]:
        """The first step, measured: what autograd keeps for backward, and the step's peak tensor memory above
        what was allocated before it (logged at step 0 as memory/kept_for_backward_mib, memory/step_peak_mib)."""
        kept = tune.kept_for_backward(exclude=self.model)
        figures, peak = step_peak_mib(lambda: self.train_step(x_s, y_s, x_t, kept), self.device)
        if self.main:
            self.writer.add_scalar(layout.KEPT_FOR_BACKWARD, kept.nbytes / MIB, 0)
            self.writer.add_scalar(layout.STEP_PEAK, peak, 0)
        LOG.info(f"autograd keeps {kept.nbytes / MIB:.1f} MiB for backward; the step peaks {peak:.1f} MiB above "
                 f"what was allocated before it (first step)")
        return figures

    def log_window(self, epoch: int) -> None:
        """Write the window's means (train/<figure>, time/*) and peak memory at the current step, and a console
        line; start a new window."""
        means = self.meter.means()
        timing = {name: means.pop(name) for name in ("iter_s", "data_s")}
        memory = peak_memory_mib(self.device)
        reset_peak_memory(self.device)
        self.meter.reset()
        if self.main:
            for name, value in means.items():
                self.writer.add_scalar(f"{layout.TRAIN_TAGS}{name}", value, self.step)
            for name, value in timing.items():
                self.writer.add_scalar(f"{layout.TIME_TAGS}{name}", value, self.step)
            self.writer.add_scalar(layout.PEAK, memory, self.step)
            if self.unreadable.images:
                self.writer.add_scalar(layout.UNREADABLE_IMAGES, len(self.unreadable.images), self.step)
        shown = " ".join(f"{name} {value:.3f}" for name, value in means.items() if name != "lr")
        LOG.info(f"Epoch [{epoch}][{self.step % self.iters_per_epoch + 1}/{self.iters_per_epoch}] {shown} "
                 f"lr {means['lr']:.2e} time {timing['iter_s']:.3f}s data {timing['data_s']:.3f}s mem {memory:.0f}MiB")

    def evaluate_epoch(self, epoch: int) -> None:
        """Evaluate on the target (test split), log it at step = epoch and update the best scores. A signal stops
        it (single process: under DDP ranks may hold different numbers of batches); the resume evaluates again."""
        result = evaluate(self.model.classifier, self.task.test, self.task.num_classes, self.device, self.main,
                          self.unreadable, self._agree_to_stop if self.world_size == 1 else None)
        if result is None:
            return
        accuracy, mean_class = result
        scores = self.scores
        scores.update(target_acc=accuracy, best_target_acc=max(scores["best_target_acc"], accuracy),
                      best_target_mean_class_acc=max(scores["best_target_mean_class_acc"], mean_class))
        self.evaluated_epochs = epoch + 1
        if self.main:
            self.writer.add_scalar(layout.TARGET_ACC, accuracy, epoch)
            if self.task.per_class:
                self.writer.add_scalar(layout.TARGET_MEAN_CLASS_ACC, mean_class, epoch)
        LOG.info(f"Epoch [{epoch}] target acc {accuracy:.2f}% (best {scores['best_target_acc']:.2f}%)"
                 + (f", mean per-class {mean_class:.2f}%" if self.task.per_class else ""))

    def save(self) -> None:
        """Checkpoint everything resuming needs (rank 0), after flushing the events it covers."""
        if self.main:
            self.writer.flush()
            checkpoint.save(self.state_dict(), self.run_dir / checkpoint.FILENAME)
        self.saved_step = self.step

    def _write_results(self) -> None:
        """The best scores as final scalars, and results.json: the marker of a finished run."""
        last_epoch = self.config["epochs"] - 1
        self.writer.add_scalar(layout.BEST_TARGET_ACC, self.scores["best_target_acc"], last_epoch)
        if self.task.per_class:
            self.writer.add_scalar(layout.BEST_TARGET_MEAN_CLASS_ACC, self.scores["best_target_mean_class_acc"],
                                   last_epoch)
        self.writer.flush()
        path = rundir.write_results(self.run_dir, {"config": self.config, "iterations": self.step, **self.scores,
                                                   "unreadable_images": sorted(self.unreadable.images.values())})
        LOG.info(f"done: best target accuracy {self.scores['best_target_acc']:.2f}% ({path})")

    def _stop_flag(self) -> Tensor:
        return torch.tensor(float(bool(self.stop.signum) or self.unreadable.exceeded), device=self.device)

    def _agree_to_stop(self) -> bool:
        """Whether any rank wants to stop (a collective under DDP: every rank must call it alike)."""
        flag = self._stop_flag()
        if self.world_size > 1:
            dist.all_reduce(flag)
        self.stopping = flag.item() > 0
        return self.stopping

    def _stop_error(self) -> ExperimentError:
        if self.unreadable.exceeded:
            return self.unreadable.error()
        signum = self.stop.signum or signal.SIGTERM  # the signal came to another rank
        return Interrupted(f"{signal.Signals(signum).name}: stopped at iteration {self.step}; checkpoint saved in "
                           f"{self.run_dir}. Continue with the same command plus --resume {self.run_dir}", signum)
