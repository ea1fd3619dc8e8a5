"""The engine's messages through `logging`: bare lines on the console (through tqdm, so progress bars stay
intact), and with time stamps in the run directory's `log.txt` (command line, config, windows, evaluations,
warnings and errors, tracebacks included), which TLlib and timm users expect next to their TensorBoard files."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from experiments.layout import TEXT_LOG as FILENAME
from experiments.utils import ExperimentError

LOG = logging.getLogger("experiments")


class _Console(logging.Handler):
    """Messages as they are: information to stdout, warnings and errors to stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr if record.levelno >= logging.WARNING else sys.stdout)


@contextmanager
def to_console(level: int = logging.INFO) -> Iterator[None]:
    """Show the engine's messages of `level` and above on the console while the block runs (debug messages, such
    as the command line and the configuration, go to log.txt only)."""
    handler = _Console(level)
    LOG.addHandler(handler)
    LOG.setLevel(logging.DEBUG)
    LOG.propagate = False
    try:
        yield
    finally:
        LOG.removeHandler(handler)


@contextmanager
def to_file(run_dir: Path) -> Iterator[None]:
    """Append the engine's messages to `run_dir`/log.txt while the block runs; an exception leaving the block is
    recorded there too (its message, or its traceback if it is a bug) before it propagates."""
    handler = logging.FileHandler(run_dir / FILENAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    try:
        yield
    except BaseException as error:
        expected = isinstance(error, ExperimentError | KeyboardInterrupt)
        record = LOG.makeRecord(LOG.name, logging.ERROR, __file__, 0, f"stopped: {error}" if expected else
                                f"stopped by {type(error).__name__}: {error}", None,
                                None if expected else sys.exc_info())
        handler.handle(record)
        raise
    finally:
        LOG.removeHandler(handler)
        handler.close()
