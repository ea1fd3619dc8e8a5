"""The modes a benchmark compares: how a fresh copy of the model becomes each mode.

Kept apart from the measurements so that adding a mode or a peer touches only this file. Every mode but Train keeps
BN on running statistics through train() (tune.freeze_bn_stats), so a detector can stay in training mode for its
losses while its BN behaves as in Eval mode; a classifier arrives in eval mode.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor, nn

import tune


@dataclass(frozen=True)
class Mode:
    """How a fresh model copy becomes this mode's runnable (returned with a note), and what the mode needs."""

    prepare: Callable[[nn.Module], tuple[Callable[[Tensor], Tensor], str]]
    missing: Callable[[], bool] = lambda: False  # True when the peer is not installed
    compiled: bool = False  # compiled graphs keep saved tensors where autograd hooks cannot see them
    eval_function: bool = True  # computes Eval mode's function, so its gradients compare to the reference


def _train(model: nn.Module) -> tuple[nn.Module, str]:
    return model.train(), "BN batch statistics"


def _eval(model: nn.Module) -> tuple[nn.Module, str]:
    tune.freeze_bn_stats(model)  # a detector stays in training mode for its losses: BN alone uses running stats
    return model, "BN running statistics"


def _tune(mode: str, model: nn.Module) -> tuple[nn.Module, str]:
    tune.freeze_bn_stats(model)
    report = tune.turn_on(model, mode=mode)
    return model, f"{len(report.pairs)} pairs, {len(report.skipped)} BN left alone"


def _mmengine(model: nn.Module) -> tuple[nn.Module, str]:
    from mmengine.model.efficient_conv_bn_eval import (
        efficient_conv_bn_eval_control,
        turn_on_efficient_conv_bn_eval_for_single_model,
    )

    tune.freeze_bn_stats(model)
    turn_on_efficient_conv_bn_eval_for_single_model(model)
    graph = model.forward.__self__.graph  # the traced GraphModule whose forward replaced the model's
    pairs = sum(node.target is efficient_conv_bn_eval_control for node in graph.nodes)
    return model, f"{pairs} pairs"


def _compiled(options: dict, prepare: Callable, model: nn.Module) -> tuple[Callable, str]:
    model, note = prepare(model)
    return torch.compile(model, options=options), " ".join(["inductor", *options, f"({note})"])


def _has_inductor_convbn_pass() -> bool:
    return hasattr(torch._inductor.config, "efficient_conv_bn_eval_fx_passes")


MODES = {
    "train": Mode(_train, eval_function=False),
    "eval": Mode(_eval),
    "tune": Mode(partial(_tune, "tune")),
    "deploy": Mode(partial(_tune, "deploy")),
    "mmengine": Mode(_mmengine, missing=lambda: importlib.util.find_spec("mmengine") is None),
    "compile": Mode(partial(_compiled, {}, _eval), compiled=True),
    "compile+inductor-convbn": Mode(
        partial(_compiled, {"efficient_conv_bn_eval_fx_passes": True}, _eval),
        missing=lambda: not _has_inductor_convbn_pass(),
        compiled=True,
    ),
    "tune+compile": Mode(partial(_compiled, {}, partial(_tune, "tune")), compiled=True),
}


@dataclass
class Bench:
    """One mode's model copy, what runs it, its optimizer, and its status and measurements."""

    name: str
    model: nn.Module | None = None
    run: Callable[[Tensor], Tensor] | None = None
    optimizer: torch.optim.Optimizer | None = None
    status: str = "ok"
    result: dict = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)

    def attempt(self, fn: Callable, *args: object) -> object:
        """Call fn(*args) unless this mode already failed; a crash marks it 'failed: <reason>' instead of raising."""
        if self.status != "ok":
            return None
        try:
            return fn(*args)
        except Exception as error:  # a peer may crash on any model; the others must still be measured
            reason = (str(error).strip().splitlines() or [""])[0][:160]
            self.status = f"failed: {type(error).__name__}: {reason}"
            return None


def prepare(name: str, base: nn.Module, optimizer_step: bool) -> Bench:
    """A deep copy of `base` converted to mode `name`, or a Bench saying why it cannot run."""
    mode, bench = MODES[name], Bench(name)
    if mode.missing():
        bench.status = "not installed"
        return bench
    bench.model = copy.deepcopy(base)
    prepared = bench.attempt(mode.prepare, bench.model)
    if prepared:
        bench.run, bench.result["note"] = prepared
        trainable = [p for p in bench.model.parameters() if p.requires_grad]
        if optimizer_step and trainable:
            bench.optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9)
    return bench
