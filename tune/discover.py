"""Find the Conv -> BN pairs of a model that can be folded, and say why every other BN cannot.

Discovery traces the model with torch.fx, convs and BNs kept as leaves, once with the model in train mode and once
in eval mode (so a branch taken in only one of them is seen), and restores every module as it was afterwards. A pair is
accepted when, in every trace that reaches it, the BN's only input is the conv's output, that output has no other
user, both modules are called exactly once and no parameter of theirs is read outside them. When a module cannot be
traced (data-dependent control flow, say), its children are traced instead, recursively, so a detector's backbone is
still found. The trace is used for discovery only: the model keeps running its own Python forward.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from .layers import is_bn_like, is_conv_like, pair_problem


@dataclass
class Discovery:
    """Pairs (conv name, BN name) that can be folded and, for every other BN-like module, why not."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class _LeafTracer(fx.Tracer):
    """An fx tracer that stops at convs and BNs, whatever their class."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return is_conv_like(module) or is_bn_like(module) or super().is_leaf_module(module, qualified_name)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:120] if text else ''}"


def _describe_input(node: object) -> str:
    if not isinstance(node, fx.Node):
        return "a constant"
    if node.op == "call_function":
        return f"{getattr(node.target, '__module__', '') or ''}.{getattr(node.target, '__name__', node.target)}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_module":
        return f"module {node.target}"
    return node.op


def _judge_graph(root: nn.Module, graph: fx.Graph, prefix: str, verdicts: dict[str, list]) -> None:
    """Append, for every BN called in `graph`, ("pair", conv name) or ("skip", reason) to verdicts[bn name]."""
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    attrs_read = [node.target for node in graph.nodes if node.op == "get_attr"]

    def reads_params(name: str) -> bool:
        return any(attr.startswith(name + ".") for attr in attrs_read)

    for node in graph.nodes:
        if node.op != "call_module" or not is_bn_like(root.get_submodule(node.target)):
            continue
        bn_name = prefix + node.target
        source = node.args[0] if node.args else next(iter(node.kwargs.values()), None)
        conv_name = source.target if isinstance(source, fx.Node) and source.op == "call_module" else None
        if len(node.args) + len(node.kwargs) != 1:
            verdict = ("skip", "BN called with more than one argument")
        elif conv_name is None or not is_conv_like(root.get_submodule(conv_name)):
            verdict = ("skip", f"its input comes from {_describe_input(source)}, not from a conv")
        elif calls[node.target] > 1:
            verdict = ("skip", f"BN called {calls[node.target]} times per forward")
        elif calls[conv_name] > 1:
            verdict = ("skip", f"conv {prefix + conv_name} called {calls[conv_name]} times per forward")
        elif len(source.users) > 1:
            others = ", ".join(str(user) for user in source.users if user is not node)
            verdict = ("skip", f"output of conv {prefix + conv_name} is also used by {others}")
        elif reads_params(conv_name) or reads_params(node.target):
            verdict = ("skip", "parameters of the conv or BN are read outside the modules")
        else:
            verdict = ("pair", prefix + conv_name)
        verdicts.setdefault(bn_name, []).append(verdict)


def _trace_recursively(module: nn.Module, prefix: str, verdicts: dict[str, list], failures: dict[str, str]) -> None:
    """Trace `module`; where that fails, record why and trace its children instead."""
    if is_conv_like(module) or is_bn_like(module):
        return
    try:
        graph = _LeafTracer().trace(module)
    except Exception as error:  # noqa: BLE001 - any trace failure means: look deeper
        failures[prefix.rstrip(".") or "<model>"] = _short(error)
        for name, child in module.named_children():
            _trace_recursively(child, f"{prefix}{name}.", verdicts, failures)
        return
    _judge_graph(module, graph, prefix, verdicts)


_CONTAINERS = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")


def _snapshot(module: nn.Module) -> tuple[dict, dict]:
    """A module's attributes and the contents of its registries, so that tracing leaves no trace."""
    return dict(module.__dict__), {name: copy.copy(module.__dict__[name]) for name in _CONTAINERS}


def _restore(module: nn.Module, snapshot: tuple[dict, dict]) -> None:
    attributes, containers = snapshot
    module.__dict__.clear()
    module.__dict__.update(attributes)
    for name, contents in containers.items():
        container = module.__dict__[name]
        container.clear()
        container.update(contents)


def _trace_in_both_modes(model: nn.Module) -> tuple[dict[str, list], dict[str, str]]:
    """Verdicts from traces in train and in eval mode. A forward that caches values on its module (torchvision's
    MultiScaleRoIAlign stores its scales) would keep fx proxies there: every module is restored as it was."""
    snapshots = {module: _snapshot(module) for module in model.modules()}
    verdicts: dict[str, list] = {}
    failures: dict[str, str] = {}
    try:
        for training in (True, False):
            for module in snapshots:
                module.training = training
            _trace_recursively(model, "", verdicts, failures)
    finally:
        for module, snapshot in snapshots.items():
            _restore(module, snapshot)
    return verdicts, failures


def _untraced_reason(name: str, failures: dict[str, str]) -> str:
    owners = [owner for owner in failures if owner == "<model>" or name.startswith(owner + ".")]
    if not owners:
        return "not called by the model's forward"
    owner = max(owners, key=len)
    return f"torch.fx cannot trace {owner} ({failures[owner]})"


def find_pairs(model: nn.Module) -> Discovery:
    """Every foldable Conv -> BN pair of `model`, and every BN-like module left alone with the reason."""
    verdicts, failures = _trace_in_both_modes(model)
    names_of: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names_of.setdefault(id(module), []).append(name)
    modules = dict(model.named_modules())
    found = Discovery()
    for name, bn in modules.items():
        if not is_bn_like(bn):
            continue
        seen = verdicts.get(name)
        convs = {conv for kind, conv in seen or [] if kind == "pair"}
        reasons = [reason for kind, reason in seen or [] if kind == "skip"]
        if seen is None:
            reason = _untraced_reason(name, failures)
        elif reasons:
            reason = reasons[0]
        elif len(convs) > 1:
            reason = f"fed by different convs in train and eval mode: {sorted(convs)}"
        else:
            conv_name = convs.pop()
            conv = modules[conv_name]
            shared = [n for n in (conv_name, name) if len(names_of[id(modules[n])]) > 1]
            reason = pair_problem(conv, bn) or (
                f"module {shared[0]} is registered under several names" if shared else None
            )
            if reason is None:
                found.pairs.append((conv_name, name))
                continue
        found.skipped.append((name, reason))
    return found
