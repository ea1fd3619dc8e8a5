"""The run directory: owned by one process at a time, and what it holds as a run starts, resumes and finishes.

Ownership is an advisory lock, `fcntl.flock` on `.lock` holding the owner's PID. The kernel releases it when the
process ends, however it ends (SIGKILL and power loss included), so a crashed run never blocks its own resume,
while a second process on the same directory fails at once instead of mixing its files with the first's. Forked
children (DataLoader workers) close their copy of the lock at once, so the lock never outlives its owner.

A run directory holds config.json (the run's one configuration), log.txt, TensorBoard event files,
checkpoint.pt and, once the run finished, results.json (the marker sweeps skip finished runs by).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from experiments import atomic, checkpoint, events
from experiments.layout import CONFIG, LOCK, RESULTS
from experiments.textlog import LOG
from experiments.utils import ExperimentError

_held: set[int] = set()  # descriptors of the locks this process holds


class RunDirectoryError(ExperimentError):
    """The run directory cannot be written, another process owns it, or it holds something else."""


def _close_in_child() -> None:
    for descriptor in _held:
        os.close(descriptor)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


@contextmanager
def owned(path: Path) -> Iterator[Path]:
    """Create `path` if needed, check that it is writable and lock it for this process while the block runs.

    Leftovers of writes that were killed outright are removed once the lock is held.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunDirectoryError(f"cannot write the run directory {path} ({error.strerror}): pick a writable "
                                f"--log") from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "another process"
            raise RunDirectoryError(
                f"{path} is in use by process {owner}: wait for it to end or stop it (kill -TERM {owner} saves a "
                f"checkpoint), or pick another --log"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _held.add(descriptor)
        atomic.remove_temporaries(path)
        yield path
    finally:
        _held.discard(descriptor)
        os.close(descriptor)  # releases the lock


def starting_state(run_dir: Path, resume: Path | None, config: dict) -> dict | None:
    """The checkpoint to continue from (`resume`), checked to belong to the experiment `config` describes and to
    lie within its epochs; None for a fresh run, which must not overwrite another run's directory."""
    if resume is None:
        if any((run_dir / name).exists() for name in (checkpoint.FILENAME, RESULTS)):
            raise RunDirectoryError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, or pick "
                                    f"another --log")
        return None
    source = checkpoint.resolve(resume)
    state = checkpoint.load(source)
    checkpoint.check_resumable(state["config"], config, source)
    if state["step"] > config["epochs"] * config["iters_per_epoch"]:
        raise checkpoint.CheckpointError(
            f"{source} is at iteration {state['step']}, beyond --epochs {config['epochs']}: pass at least --epochs "
            f"{math.ceil(state['step'] / config['iters_per_epoch'])}")
    return state


def finished(run_dir: Path, state: dict, epochs: int, owner: bool) -> bool:
    """Whether the resumed run has nothing left to do (it finished, and `epochs` asks for no more). A finished run
    that is to train on loses its results.json (removed by the `owner`), which would no longer describe it."""
    results = run_dir / RESULTS
    if not results.is_file():
        return False
    done = state["config"]["epochs"]
    if done == epochs:
        LOG.info(f"{run_dir} finished already ({RESULTS}): nothing to do")
        return True
    LOG.info(f"{run_dir} finished {done} epochs and trains on to {epochs}: its {RESULTS} is removed until then")
    if owner:
        results.unlink()
    return False


def prepare(run_dir: Path, config: dict, state: dict | None) -> SummaryWriter:
    """Write config.json (when it changes) and open the TensorBoard writer, keeping of earlier attempts only what
    lies before the checkpoint resumed from: nothing for a fresh run, which may reuse the directory of an attempt
    killed before its first checkpoint, but not one holding event files of something else."""
    previous = run_dir / CONFIG
    if state is None and events.event_files(run_dir):
        if not previous.is_file():
            raise RunDirectoryError(f"{run_dir} holds TensorBoard event files but no {CONFIG} of this engine: pick "
                                    f"another --log")
        LOG.info(f"{run_dir}: starting over; what the attempt killed before its first checkpoint logged is removed")
    text = json.dumps(config, indent=2)
    if not previous.is_file() or previous.read_text() != text:
        checkpoint.write_run_file(previous, text.encode())
    LOG.debug(f"config: {json.dumps(config)}")
    writer = events.open_writer(run_dir, *((state["step"], state["evaluated_epochs"]) if state else ()))
    writer.add_text("config", text)  # config.json in TensorBoard's text tab (never carried over: once)
    return writer


def write_results(run_dir: Path, results: dict) -> Path:
    """Write results.json, the marker of a finished run; returns its path."""
    path = run_dir / RESULTS
    checkpoint.write_run_file(path, json.dumps(results, indent=2).encode())
    return path
