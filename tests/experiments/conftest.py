"""Uninterrupted reference runs, trained once per session, that interrupted and resumed runs must reproduce."""

from __future__ import annotations

import pytest
import torch

from experiments import engine
from experiments.dann import DANN
from experiments.finetune import FineTune
from tests.experiments.helpers import DANN_REFERENCE, FINETUNE_REFERENCE, task_args


def _reference(method, options, synthetic_data, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = tmp_path_factory.mktemp("reference") / method.name
        assert engine.main(method, task_args(synthetic_data, run_dir, *options)) == 0
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="session")
def dann_reference(synthetic_data, tmp_path_factory):
    """Run directory of DANN_REFERENCE, uninterrupted."""
    return _reference(DANN, DANN_REFERENCE, synthetic_data, tmp_path_factory)


@pytest.fixture(scope="session")
def finetune_reference(synthetic_data, tmp_path_factory):
    """Run directory of FINETUNE_REFERENCE, uninterrupted."""
    return _reference(FineTune, FINETUNE_REFERENCE, synthetic_data, tmp_path_factory)
