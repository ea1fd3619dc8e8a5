"""SIGINT and SIGTERM: a clean stop at start-up (one line, nothing to save), a checkpoint during training.

Slurm time limits, `scancel`, `kill -- -PGID` and Ctrl-C signal the whole process group, DataLoader workers
included. Workers therefore ignore both signals: they keep serving the main process until it has saved, and it
shuts them down on its way out (they also exit on their own once it is gone).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A signal stopped the process at a point where nothing is saved (start-up, testing, a second Ctrl-C)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


def _stopped_at_start(signum: int) -> str:
    return f"{signal.Signals(signum).name}: stopped; nothing was being trained, nothing to save"


def _stop_at_once(signum: int, _frame: object) -> None:
    raise Stopped(signum, _stopped_at_start(signum))


def _exit_at_once(signum: int, _frame: object) -> None:
    print(_stopped_at_start(signum), file=sys.stderr)
    sys.exit(128 + signum)


def exit_at_once() -> None:
    """From now until the engine installs its own handlers, SIGINT and SIGTERM end the process with one line and
    status 128 + the signal's number: a command is importing torch (seconds), where a KeyboardInterrupt would
    print a traceback of the import machinery."""
    for signum in SIGNALS:
        signal.signal(signum, _exit_at_once)



@contextmanager
def stop_at_once() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise Stopped (a KeyboardInterrupt) wherever the process is."""
    previous = {signum: signal.signal(signum, _stop_at_once) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class GracefulStop:
    """While active, SIGINT/SIGTERM ask the training loop to stop after the current step and save a checkpoint;
    `signum` says which came. A second Ctrl-C raises Stopped at once, without saving."""

    def __init__(self) -> None:
        self.signum = 0

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum
        signal.signal(signal.SIGINT, self._abort)

    def _abort(self, signum: int, _frame: object) -> None:
        raise Stopped(signum, "SIGINT again: stopped without saving; the last checkpoint is kept as it was")

    def __enter__(self) -> GracefulStop:
        self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def ignore_in_worker(_worker_id: int) -> None:
    """DataLoader worker_init_fn: leave SIGINT and SIGTERM to the main process."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
