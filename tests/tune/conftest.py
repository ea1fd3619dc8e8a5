"""Fixtures of the tune tests."""

import pytest

from tune import convert

STRATEGIES = {"fold": 0, "recompute": 10**12}  # positions up to which a pair recomputes instead of folding


@pytest.fixture(params=list(STRATEGIES))
def strategy(request, monkeypatch):
    """Run the test once with every pair folding its weights and once with every pair recomputing its conv output
    (as tiny and large feature maps would choose), so that both ways of computing Tune mode are checked."""
    monkeypatch.setattr(convert, "RECOMPUTE_MAX_POSITIONS", STRATEGIES[request.param])
    return request.param
