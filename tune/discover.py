"""Find the Conv -> BN pairs of a model that can be folded, and say why every other BN cannot.

Discovery traces the model with torch.fx, convs and BNs kept as leaves, in train mode and in eval mode. Where the
forward branches in Python on a traced value (a tensor, its size, an argument such as `output_hidden_states`) or
loops over an input, tracing does not give up: the trace is repeated once for every way those branches can go
(`_PathTracer`, up to MAX_BRANCHES branches on one path), so every path the forward can take is seen. int() and
float() of a traced value (padding computed from the input's size) stay traced (`_numbers_traced`). A pair is
accepted when, on every path that reaches it, the BN's only input is the conv's output, that output has no other
user, both modules are called exactly once and no parameter of theirs is read outside them. When a module still
cannot be traced (too many branches, or Python that tracing cannot follow), its children are traced instead,
recursively, so a detector's backbone is still found. The trace is used for discovery only: the model keeps running
its own Python forward, and every module is left exactly as it was found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch.fx as fx
from torch import nn

from . import explain
from .geometry import batched_ndim
from .layers import is_bn_like, is_conv_like, pair_problem
from .report import Report

# Branches on traced values along one path of a module's forward, at most; so at most 2**MAX_BRANCHES paths are
# traced. A module with more is not traced as a whole: its children are, one by one.
MAX_BRANCHES = 6


class _TooManyPaths(Exception):
    """A path through a module's forward branches more than MAX_BRANCHES times."""


class _NoPath(Exception):
    """A module's forward raised on every path it was traced on."""


# Errors of a forward's own checks and of torch ops on values that are not traced: on a path that raises one, the
# model itself raises (fx's own errors, TypeError from int() of a traced value, say, are failures of the trace)
_RAISES_ON_ITS_OWN = (ValueError, IndexError, AssertionError, ZeroDivisionError)


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


class _PathTracer(_LeafTracer):
    """Traces one path: each branch on a traced value (bool(), or whether an iterated input has one more element)
    follows `script`, then goes the False way; `taken` records the choices. The same value decides the same way
    wherever it is tested again."""

    def __init__(self, script: list[bool]) -> None:
        super().__init__()
        self.script, self.taken, self.decided = script, [], {}

    def _decide(self, key: object) -> bool:
        if key in self.decided:
            return self.decided[key]
        step = len(self.taken)
        if step >= MAX_BRANCHES:
            raise _TooManyPaths
        choice = self.script[step] if step < len(self.script) else False
        self.taken.append(choice)
        self.decided[key] = choice
        return choice

    def to_bool(self, obj: fx.Proxy) -> bool:
        return self._decide(obj.node)

    def iter(self, obj: fx.Proxy) -> Iterator:
        index = 0
        while self._decide((obj.node, index)):
            yield obj[index]
            index += 1


class _TracedNumber(type):
    """The type of `int` and `float` as model code sees them while traced: calling one on a traced value (a size,
    say) gives a traced value, so what the forward computes from it is recorded and every branch on it is followed,
    never fixed to one value; anything else (isinstance, int.from_bytes, plain values) is the builtin's."""

    def __call__(cls, value: object = 0, *args: object) -> object:
        if isinstance(value, fx.Proxy):
            return value.tracer.create_proxy("call_function", cls.builtin, (value, *args), {})
        return cls.builtin(value, *args)

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls.builtin)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls.builtin)

    def __getattr__(cls, name: str) -> object:
        return getattr(cls.builtin, name)


_TRACED_NUMBERS = {kind.__name__: _TracedNumber(kind.__name__, (), {"builtin": kind}) for kind in (int, float)}


@contextmanager
def _numbers_traced(model: nn.Module) -> Iterator[None]:
    """While tracing, int() and float() in the source files of the model's own module classes (the globals their
    forwards see; torch's are left alone) keep traced values traced; the globals are restored on exit. Code in other
    files still stops the trace, which is then retried on the module's children."""
    patched = []
    for module in model.modules():
        if type(module).__module__.split(".")[0] == "torch":
            continue
        namespace = getattr(type(module).forward, "__globals__", None)
        if namespace is None or any(namespace is seen for seen in patched):
            continue
        if not any(name in namespace for name in _TRACED_NUMBERS):
            namespace.update(_TRACED_NUMBERS)
            patched.append(namespace)
    try:
        yield
    finally:
        for namespace in patched:
            for name in _TRACED_NUMBERS:
                del namespace[name]


def _trace_path(tracer: _PathTracer, module: nn.Module) -> fx.Graph | None:
    """The graph of one path, or None where the forward itself raises on that path (torch.cat of an empty list when
    an iterated input has no element, say), so the model cannot return through it either."""
    try:
        return tracer.trace(module)
    except _RAISES_ON_ITS_OWN as error:
        if isinstance(error, fx.proxy.TraceError):
            raise
        return None


def _every_path(module: nn.Module) -> list[fx.Graph]:
    """One graph per path through `module`'s forward: depth-first over the branch choices, True after False."""
    graphs, script = [], []
    while True:
        tracer = _PathTracer(script)
        graph = _trace_path(tracer, module)
        graphs += [graph] if graph is not None else []
        script = tracer.taken
        while script and script[-1]:
            script.pop()
        if not script:
            if not graphs:
                raise _NoPath
            return graphs
        script[-1] = True


# ---- Judging each BN of a traced graph.


def _judge_graph(root: nn.Module, graph: fx.Graph, prefix: str, parent_failure: str, verdicts: dict[str, list]) -> None:
    """Append, for every BN called in `graph`, ("pair", conv name) or ("skip", reason) to verdicts[bn name]."""
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    attrs_read = [node.target for node in graph.nodes if node.op == "get_attr"]

    def reads_params(name: str) -> bool:
        return any(attr.startswith(name + ".") for attr in attrs_read)

    def words(node: object) -> str:
        said = explain.describe(node, root, prefix)
        alone = isinstance(node, fx.Node) and node.op == "placeholder" and prefix
        return said + explain.input_traced_alone(parent_failure) if alone else said

    for node in graph.nodes:
        if node.op != "call_module" or not is_bn_like(root.get_submodule(node.target)):
            continue
        source = node.args[0] if node.args else next(iter(node.kwargs.values()), None)
        conv_name = source.target if isinstance(source, fx.Node) and source.op == "call_module" else None
        if len(node.args) + len(node.kwargs) != 1:
            verdict = ("skip", explain.TOO_MANY_ARGUMENTS)
        elif conv_name is None or not is_conv_like(root.get_submodule(conv_name)):
            verdict = ("skip", explain.not_from_conv(words(source)))
        elif calls[node.target] > 1:
            verdict = ("skip", explain.called_often("it", calls[node.target]))
        elif calls[conv_name] > 1:
            verdict = ("skip", explain.called_often(f"its conv {prefix + conv_name}", calls[conv_name]))
        elif len(source.users) > 1:
            others = sorted({words(user) for user in source.users if user is not node})
            verdict = ("skip", explain.also_used(prefix + conv_name, others))
        elif reads_params(conv_name) or reads_params(node.target):
            verdict = ("skip", explain.PARAMETERS_READ)
        else:
            verdict = ("pair", prefix + conv_name)
        verdicts.setdefault(prefix + node.target, []).append(verdict)


def _trace_recursively(
    module: nn.Module, prefix: str, parent_failure: str, verdicts: dict[str, list], failures: dict[str, str]
) -> None:
    """Trace every path through `module`; where that fails, record why and trace its children instead."""
    if is_conv_like(module) or is_bn_like(module):
        return
    try:
        graphs = _every_path(module)
    except Exception as error:  # noqa: BLE001 - any trace failure means: look deeper
        owner = explain.owner_words(module, prefix)
        too_many = MAX_BRANCHES if isinstance(error, _TooManyPaths) else None
        failure = explain.trace_failure(owner, error, too_many, isinstance(error, _NoPath))
        failures[prefix.rstrip(".")] = failure
        for name, child in module.named_children():
            _trace_recursively(child, f"{prefix}{name}.", failure, verdicts, failures)
        return
    for graph in graphs:
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
        return explain.NOT_CALLED
    return explain.untraced(failures[max(owners, key=len)])


def find_pairs(model: nn.Module) -> Report:
    """Every foldable Conv -> BN pair of `model`, and every BN-like module left alone with the reason: a dry run of
    turn_on that changes nothing.

    Whatever tracing or probing a conv's forward stores on a module (fx proxies in a cache, say) is undone."""
    with _left_as_found(model), _numbers_traced(model):
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
            reason = explain.different_convs(sorted(convs))
        else:
            conv_name = convs.pop()
            conv = modules[conv_name]
            shared = [n for n in (conv_name, name) if len(names_of[id(modules[n])]) > 1]
            reason = pair_problem(conv, bn, batched_ndim(conv))
            if reason is None and shared:
                reason = explain.shared_module(shared[0])
            if reason is None:
                found.pairs.append((conv_name, name))
                continue
        found.skipped.append((name, reason))
    return found
