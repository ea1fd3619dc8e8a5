"""Fixtures of the tune tests."""

import pytest


@pytest.fixture(params=["fold", "recompute"])
def strategy(request) -> str:
    """Run the test once with every pair folding its weights and once with every pair recomputing its conv output
    (as large and tiny feature maps would choose under turn_on's default, "auto"), so that both ways of computing
    Tune mode are checked; pass it on as tune.turn_on(model, strategy=strategy)."""
    return request.param
