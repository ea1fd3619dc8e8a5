"""Fixtures of the tune tests."""

import pytest

from tune import convert

STRATEGIES = {"fold": 0, "recompute": 10**12}  # positions up to which a pair recomputes instead of folding


@pytest.fixture(params=list(STRATEGIES))
def strategy(request):
    """Run the test once with every pair folding its weights and once with every pair recomputing its conv output
    (as tiny and large feature maps would choose), so that both ways of computing Tune mode are checked."""
    saved = dict(convert.RECOMPUTE_MAX_POSITIONS)
    convert.RECOMPUTE_MAX_POSITIONS.update(cpu=STRATEGIES[request.param], cuda=STRATEGIES[request.param])
    yield request.param
    convert.RECOMPUTE_MAX_POSITIONS.clear()
    convert.RECOMPUTE_MAX_POSITIONS.update(saved)
