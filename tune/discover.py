"""Find the Conv -> BN pairs of a model that can be folded, and say why every other BN cannot.

Discovery traces the model with torch.fx, convs and BNs kept as leaves, once with the model in train mode and once
in eval mode (so a branch taken in only one of them is seen). A pair is accepted when, in every trace that reaches it,
the BN's only input is the conv's output, that output has no other user, both modules are called exactly once and no
parameter of theirs is read outside them. When a module cannot be traced (data-dependent control flow, say), its
children are traced instead, recursively, so a detector's backbone is still found. The trace is used for discovery
only: the model keeps running its own Python forward, and every module is left exactly as it was found.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch.fx as fx
from torch import nn

from .layers import is_bn_like, is_conv_like, pair_problem
from .report import Report


class _LeafTracer(fx.Tracer):
    """An fx tracer that stops at convs and BNs, whatever their class."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return is_conv_like(module) or is_bn_like(module) or super().is_leaf_module(module, qualified_name)


# ---- Leaving no trace: a forward may store values (fx proxies while traced) on its module, in containers too.

def _remember(root: object, saved: dict) -> None:
    """Record the contents of `root` and of every dict, list and set reachable from it through containers and
    tuples (not through modules, tensors or other objects), by identity, so they can be put back in place."""
    pending = [root]
    while pending:
        value = pending.pop()
        if isinstance(value, tuple):
            pending.extend(value)
        elif isinstance(value, (dict, list, set)) and id(value) not in saved:
            kind = dict if isinstance(value, dict) else list if isinstance(value, list) else set
            contents = kind(value)
            saved[id(value)] = (value, contents)
            pending.extend(contents.values() if isinstance(value, dict) else contents)


def _put_back(saved: dict) -> None:
    for container, contents in saved.values():
        if isinstance(container, list):
            container[:] = contents
        else:
            container.clear()
            container.update(contents)


@contextmanager
def _left_as_found(model: nn.Module) -> Iterator[None]:
    """Every module's attributes, registries and the containers they hold are restored, in place, on exit."""
    saved: dict = {}
    for module in model.modules():
        _remember(module.__dict__, saved)
    try:
        yield
    finally:
        _put_back(saved)


# ---- Words for a person: module paths and class names, operators as they are written in Python.

_OPERATORS = {
    operator.add: "a residual add (+)", operator.iadd: "a residual add (+=)",
    operator.sub: "a subtraction (-)", operator.isub: "a subtraction (-=)",
    operator.mul: "a multiplication (*)", operator.imul: "a multiplication (*=)",
    operator.truediv: "a division (/)", operator.itruediv: "a division (/=)",
    operator.matmul: "a matrix product (@)", operator.neg: "a negation (-x)",
    operator.getitem: "indexing or slicing (x[...])", getattr: "an attribute read",
}
_PUBLIC_HOMES = {"torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch"}


def _module_words(root: nn.Module, prefix: str, target: str) -> str:
    return f"module {prefix}{target} ({type(root.get_submodule(target)).__name__})"


def _owner_words(root: nn.Module, prefix: str) -> str:
    return f"{prefix.rstrip('.')} ({type(root).__name__})" if prefix else "the model"


def _function_words(function: object) -> str:
    if function in _OPERATORS:
        return _OPERATORS[function]
    home = getattr(function, "__module__", None) or ""
    name = getattr(function, "__name__", None) or repr(function)
    if home in ("_operator", "operator"):
        return f"the Python operator {name}"
    return f"{_PUBLIC_HOMES.get(home, home)}.{name}" if home else name


def _describe(node: object, root: nn.Module, prefix: str, parent_failure: str) -> str:
    """What produces (or uses) a value of the graph traced from `root`, in the terms of the model's source
    (`parent_failure` says why `root` was traced on its own)."""
    if not isinstance(node, fx.Node):
        return "a constant"
    if node.op == "call_function":
        return _function_words(node.target)
    if node.op == "call_method":
        return f"the tensor method .{node.target}()"
    if node.op == "call_module":
        return _module_words(root, prefix, node.target)
    if node.op == "get_attr":
        return f"the tensor {prefix}{node.target}"
    if node.op == "output":
        return f"the return value of {_owner_words(root, prefix)}"
    if not prefix:
        return "the model's input"
    return f"the input of {_owner_words(root, prefix)}, traced on its own because {parent_failure}"


def _trace_failure(error: Exception) -> str:
    """Why torch.fx could not trace a module, without fx's own names for traced values."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if "symbolically traced variables cannot be used as inputs to control flow" in first:
        return "its forward branches on the value of a tensor"
    first = re.sub(r"Proxy\([^)]*\)", "a traced tensor", first)
    return f"{type(error).__name__}: {first[:120]}"


# ---- Judging each BN of a traced graph.


def _judge_graph(root: nn.Module, graph: fx.Graph, prefix: str, parent_failure: str, verdicts: dict[str, list]) -> None:
    """Append, for every BN called in `graph`, ("pair", conv name) or ("skip", reason) to verdicts[bn name]."""
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    attrs_read = [node.target for node in graph.nodes if node.op == "get_attr"]

    def reads_params(name: str) -> bool:
        return any(attr.startswith(name + ".") for attr in attrs_read)

    def words(node: object) -> str:
        return _describe(node, root, prefix, parent_failure)

    for node in graph.nodes:
        if node.op != "call_module" or not is_bn_like(root.get_submodule(node.target)):
            continue
        bn_name = prefix + node.target
        source = node.args[0] if node.args else next(iter(node.kwargs.values()), None)
        conv_name = source.target if isinstance(source, fx.Node) and source.op == "call_module" else None
        if len(node.args) + len(node.kwargs) != 1:
            verdict = ("skip", "BN called with more than one argument")
        elif conv_name is None or not is_conv_like(root.get_submodule(conv_name)):
            verdict = ("skip", f"its input comes from {words(source)}, not from a conv")
        elif calls[node.target] > 1:
            verdict = ("skip", f"BN called {calls[node.target]} times per forward")
        elif calls[conv_name] > 1:
            verdict = ("skip", f"conv {prefix + conv_name} called {calls[conv_name]} times per forward")
        elif len(source.users) > 1:
            others = sorted({words(user) for user in source.users if user is not node})
            verdict = ("skip", f"output of conv {prefix + conv_name} is also used by {', '.join(others)}")
        elif reads_params(conv_name) or reads_params(node.target):
            verdict = ("skip", "parameters of the conv or BN are read outside the modules")
        else:
            verdict = ("pair", prefix + conv_name)
        verdicts.setdefault(bn_name, []).append(verdict)


def _trace_recursively(
    module: nn.Module, prefix: str, parent_failure: str, verdicts: dict[str, list], failures: dict[str, str]
) -> None:
    """Trace `module`; where that fails, record why and trace its children instead."""
    if is_conv_like(module) or is_bn_like(module):
        return
    try:
        graph = _LeafTracer().trace(module)
    except Exception as error:  # noqa: BLE001 - any trace failure means: look deeper
        failure = f"torch.fx cannot trace {_owner_words(module, prefix)} ({_trace_failure(error)})"
        failures[prefix.rstrip(".")] = failure
        for name, child in module.named_children():
            _trace_recursively(child, f"{prefix}{name}.", failure, verdicts, failures)
        return
    _judge_graph(module, graph, prefix, parent_failure, verdicts)


def _trace_in_both_modes(model: nn.Module) -> tuple[dict[str, list], dict[str, str]]:
    """Verdicts from traces in train and in eval mode, and why the modules that could not be traced could not."""
    verdicts: dict[str, list] = {}
    failures: dict[str, str] = {}
    for training in (True, False):
        for module in model.modules():
            module.training = training
        _trace_recursively(model, "", "", verdicts, failures)
    return verdicts, failures


def _untraced_reason(name: str, failures: dict[str, str]) -> str:
    owners = [owner for owner in failures if owner == "" or name.startswith(owner + ".")]
    if not owners:
        return "not called by the model's forward"
    return failures[max(owners, key=len)]


def find_pairs(model: nn.Module) -> Report:
    """Every foldable Conv -> BN pair of `model`, and every BN-like module left alone with the reason.

    Whatever tracing or probing a conv's forward stores on a module (fx proxies in a cache, say) is undone."""
    with _left_as_found(model):
        return _judge_model(model)


def _judge_model(model: nn.Module) -> Report:
    verdicts, failures = _trace_in_both_modes(model)
    names_of: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names_of.setdefault(id(module), []).append(name)
    modules = dict(model.named_modules())
    found = Report()
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
            reason = f"fed by different convs in train and eval mode: {', '.join(sorted(convs))}"
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
