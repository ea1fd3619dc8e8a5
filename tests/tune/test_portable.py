"""tune/ is copied into other projects: its source must run on python 3.8 (pyproject's requires-python)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tune

SOURCES = sorted(Path(tune.__file__).parent.glob("*.py"))


def _newer_than_38(tree: ast.AST) -> list[str]:
    """Runtime uses of features newer than python 3.8 that its parser accepts anyway."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name == "zip" and any(k.arg == "strict" for k in node.keywords):
                found.append(f"line {node.lineno}: zip(strict=) is python 3.10")
            if name in ("isinstance", "issubclass") and len(node.args) == 2 and isinstance(node.args[1], ast.BinOp):
                found.append(f"line {node.lineno}: {name} with X | Y is python 3.10")
            if name in ("removeprefix", "removesuffix"):
                found.append(f"line {node.lineno}: str.{name} is python 3.9")
        if isinstance(node, ast.Match):
            found.append(f"line {node.lineno}: match is python 3.10")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_tune_source_runs_on_python_38(path):
    source = path.read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    assert _newer_than_38(tree) == []
    annotated = any(isinstance(n, (ast.AnnAssign, ast.arg)) and n.annotation is not None
                    or isinstance(n, ast.FunctionDef) and n.returns is not None for n in ast.walk(tree))
    if annotated:  # list[int], X | None in annotations are strings only with postponed evaluation
        assert "from __future__ import annotations" in source


def test_the_check_finds_what_it_looks_for():
    tree = ast.parse("isinstance(x, int | str)\nzip(a, b, strict=True)\n'ab'.removeprefix('a')")
    assert len(_newer_than_38(tree)) == 3
