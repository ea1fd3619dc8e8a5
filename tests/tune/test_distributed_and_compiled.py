"""Tune mode under torch.compile and under DistributedDataParallel (gloo, 2 processes on the CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import tune
from tests.tune.helpers import forward_backward, max_relative_error, randomize_bn

pytestmark = pytest.mark.slow  # compiles, and spawns processes


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4), nn.BatchNorm1d(4),
    ))


def test_compiled_tune_model_matches_eager_eval():
    reference = small_net().eval()
    model = copy.deepcopy(reference)
    assert len(tune.turn_on(model).pairs) == 3
    compiled = torch.compile(model)
    x = torch.randn(4, 3, 12, 12)
    out, gx, grads = forward_backward(compiled, x)
    ref_out, ref_gx, ref_grads = forward_backward(reference, x)
    assert max_relative_error(out[0], ref_out[0]) < 1e-5 and max_relative_error(gx, ref_gx) < 1e-5
    for name, want in ref_grads.items():
        assert max_relative_error(grads[f"_orig_mod.{name}"], want) < 1e-5


def _train_ddp(rank: int, world_size: int, init_file: str, convert: bool, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    model = small_net()
    tune.freeze_bn_stats(model)
    if convert:
        tune.turn_on(model)
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(8, 3, 12, 12, generator=generator), torch.randint(0, 4, (8,), generator=generator)
        loss = nn.functional.cross_entropy(ddp(x[rank::world_size]), y[rank::world_size])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    results[(convert, rank)] = {k: v.clone() for k, v in model.state_dict().items()}
    dist.destroy_process_group()


def _worker(rank: int, world_size: int, init_dir: str, results: dict) -> None:
    for convert in (False, True):
        _train_ddp(rank, world_size, f"{init_dir}/init-{int(convert)}", convert, results)


def test_ddp_with_gloo_trains_a_converted_model_like_an_unconverted_one(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(2, str(tmp_path), results), nprocs=2, join=True)
        results = dict(results)
    plain, tuned = results[(False, 0)], results[(True, 0)]
    assert plain.keys() == tuned.keys()
    for key, want in plain.items():
        assert torch.equal(results[(True, 1)][key], tuned[key])
        if want.is_floating_point():
            assert max_relative_error(tuned[key], want) < 1e-5, key
    assert not torch.equal(plain["0.weight"], small_net().state_dict()["0.weight"])
