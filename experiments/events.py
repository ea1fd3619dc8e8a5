"""TensorBoard event files that stay clean across interruptions: each tag holds each step once, in order.

A run killed after its last checkpoint logged points that its resume logs again, and a run killed before its first
checkpoint starts over. So whenever a run (re)starts, the scalars of earlier attempts are carried over into the new
event file only as far as the checkpoint reaches, and the old files are deleted (other summaries, such as the
config text, are not carried over: each start writes them anew). Which tags are stepped by epoch and which are
written when a run finishes: experiments/layout.py.
"""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from torch.utils.tensorboard import SummaryWriter

from experiments.layout import EPOCH_TAGS, EVENT_FILES, FINAL_TAGS


def event_files(run_dir: Path) -> list[Path]:
    """The TensorBoard event files directly in `run_dir`."""
    return sorted(path for path in run_dir.glob(EVENT_FILES) if path.is_file())


def kept_scalars(files: list[Path], iterations: int, epochs: int) -> list[tuple[str, float, int, float]]:
    """(tag, value, step, wall time) of every scalar in `files` logged before the checkpoint of a run that has
    trained `iterations` iterations and evaluated `epochs` epochs; each (tag, step) once, in order of logging."""
    kept: dict[tuple[str, int], tuple[str, float, int, float]] = {}
    for path in files:
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.WhichOneof("value") != "simple_value" or value.tag.startswith(FINAL_TAGS):
                    continue
                limit = epochs if value.tag.startswith(EPOCH_TAGS) else iterations
                if event.step < limit:
                    kept.setdefault((value.tag, event.step), (value.tag, value.simple_value, event.step,
                                                              event.wall_time))
    return sorted(kept.values(), key=lambda scalar: scalar[3])


def open_writer(run_dir: Path, iterations: int = 0, epochs: int = 0) -> SummaryWriter:
    """A SummaryWriter on `run_dir` whose new event file starts with what earlier attempts logged before the
    checkpoint being resumed (nothing for a fresh run); the earlier files are then removed.

    A crash between writing the new file and removing the old ones leaves duplicates that the next start drops.
    """
    old = event_files(run_dir)
    carried = kept_scalars(old, iterations, epochs)
    writer = SummaryWriter(str(run_dir))
    for tag, value, step, wall_time in carried:
        writer.add_scalar(tag, value, step, walltime=wall_time)
    writer.flush()
    for path in old:
        path.unlink()
    return writer
