"""Fixtures shared by test modules that ask for them by name."""

import pytest
import torch


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """Root of the synthetic Office-31 stand-in: generated there on first use, once per session."""
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture
def single_thread():
    """One intra-op thread: on shared CPU cores, OpenMP threads spin-wait against other processes and run many
    times slower; subprocesses get OMP_NUM_THREADS=1 too, so in-process runs reproduce theirs bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
