"""Why a BN is left alone, in full sentences and in the terms of the model's source, never in torch.fx's.

Discovery (discover.py) decides; this module only words its decisions: module paths and class names, operators as
they are written in Python, and, where tracing failed, what in the forward stopped it and what the user can change.
"""

from __future__ import annotations

import operator

import torch.fx as fx
from torch import nn

_OPERATORS = {
    operator.add: "a residual add (+)", operator.iadd: "a residual add (+=)",
    operator.sub: "a subtraction (-)", operator.isub: "a subtraction (-=)",
    operator.mul: "a multiplication (*)", operator.imul: "a multiplication (*=)",
    operator.truediv: "a division (/)", operator.itruediv: "a division (/=)",
    operator.matmul: "a matrix product (@)", operator.neg: "a negation (-x)",
    operator.getitem: "indexing or slicing (x[...])", getattr: "an attribute read",
}
_PUBLIC_HOMES = {"torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch"}
# (words in the exception, what the forward does) for the trace failures that ordinary model code runs into
_TRACE_FAILURES = (
    ("int() argument", "converts a tensor's value or size to a Python int"),
    ("float() argument", "converts a tensor's value to a Python float"),
    ("'len' is not supported", "calls len() on a tensor or on one of its arguments"),
    ("cannot be iterated", "iterates over a tensor or an argument in a way tracing cannot follow"),
    ("control flow", "branches on a value computed from its inputs"),
)


def module_words(root: nn.Module, prefix: str, target: str) -> str:
    return f"module {prefix}{target} ({type(root.get_submodule(target)).__name__})"


def owner_words(root: nn.Module, prefix: str) -> str:
    """A module traced on its own, named as the user wrote it."""
    return f"{prefix.rstrip('.')} ({type(root).__name__})" if prefix else "the model"


def _function_words(function: object) -> str:
    if function in _OPERATORS:
        return _OPERATORS[function]
    home = getattr(function, "__module__", None) or ""
    name = getattr(function, "__name__", None) or repr(function)
    if home in ("_operator", "operator"):
        return f"the Python operator {name}"
    return f"{_PUBLIC_HOMES.get(home, home)}.{name}" if home else name


def describe(node: object, root: nn.Module, prefix: str) -> str:
    """What produces (or uses) a value of the graph traced from `root` (the module at `prefix`)."""
    if not isinstance(node, fx.Node):
        return "a constant"
    if node.op == "call_function":
        return _function_words(node.target)
    if node.op == "call_method":
        return f"the tensor method .{node.target}()"
    if node.op == "call_module":
        return module_words(root, prefix, node.target)
    if node.op == "get_attr":
        return f"the tensor {prefix}{node.target}"
    if node.op == "output":
        return f"the return value of {owner_words(root, prefix)}"
    return "the model's input" if not prefix else f"the input of {owner_words(root, prefix)}"


def trace_failure(owner: str, error: Exception, max_branches: int | None, raised_everywhere: bool) -> str:
    """Why torch.fx could not trace `owner` (`max_branches`: a path through it branches more often than that;
    `raised_everywhere`: its forward raised on every path), as a clause that ends a sentence."""
    if max_branches is not None:
        why = (f"its forward branches more than {max_branches} times in Python on its inputs, their sizes or its "
               f"arguments, too many paths to trace one by one")
    elif raised_everywhere:
        why = "its forward raised an error on every path through its branches that tracing tried"
    else:
        text = str(error)
        doing = next((words for key, words in _TRACE_FAILURES if key in text), None)
        why = (f"its forward {doing}" if doing else
               f"its forward does something with its inputs that symbolic tracing cannot follow (it raised "
               f"{type(error).__name__})")
    return f"torch.fx cannot trace {owner}: {why}"


def untraced(failure: str) -> str:
    return (f"it lies inside a module that could not be traced ({failure}), and no smaller part of that module that "
            f"contains it could be traced on its own either; to convert it, change what stopped the trace, as named "
            f"in parentheses")


def input_traced_alone(failure: str) -> str:
    """Appended where a BN's input is the input of a module traced on its own."""
    return f" (that module was traced on its own because {failure})"


NOT_CALLED = "it is not called by the model's forward in train or in eval mode, so there is nothing to fold it into"
TOO_MANY_ARGUMENTS = "it is called with more than one argument, so its input is not a conv's output alone"
PARAMETERS_READ = ("the conv's or the BN's parameters are also read outside the two modules, which would not see "
                   "the fold")


def not_from_conv(source: str) -> str:
    return f"its input comes from {source}, not from a conv, so there is no conv to fold it into"


def called_often(what: str, times: int) -> str:
    return f"{what} is called {times} times in one forward, and a fold applies to every call of both modules"


def also_used(conv: str, users: list[str]) -> str:
    return (f"the output of conv {conv} is also used by {', '.join(users)}, which would see the normalised output "
            f"instead of the conv's")


def different_convs(convs: list[str]) -> str:
    return (f"it is fed by different convs on different paths through the forward ({', '.join(convs)}), so no one "
            f"conv can hold its fold")


def shared_module(name: str) -> str:
    return f"module {name} is registered under several names, so it may be called from more than one place"
