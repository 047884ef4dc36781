"""The shape the code keeps (issue 24): small functions with few parameters, and a ModelSpec changed only by
its own module (the facts found for it are applied with ``ModelSpec.resolved``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "modelpvc"
MAX_LINES = 60
MAX_PARAMS = 8


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{path.relative_to(SRC)}:{node.lineno} {node.name}", node))
    return out


def test_no_function_is_longer_than_60_lines_or_takes_more_than_8_parameters() -> None:
    long = [f"{where} ({n.end_lineno - n.lineno + 1} lines)" for where, n in _functions()
            if n.end_lineno is not None and n.end_lineno - n.lineno + 1 > MAX_LINES]
    wide = []
    for where, n in _functions():
        a = n.args
        params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs) if p.arg not in ("self", "cls")]
        if len(params) > MAX_PARAMS:
            wide.append(f"{where} ({len(params)} parameters)")
    assert not long and not wide, f"too long: {long}; too many parameters: {wide}"


def test_a_model_spec_is_replaced_only_in_its_own_module() -> None:
    """``dataclasses.replace`` on a spec elsewhere would be a second builder; Placement and other records may be."""
    spec_fields = {"pvc", "source", "secret", "secret_keys", "endpoint_url", "size", "placement", "fs_group",
                   "model_bytes", "path", "serving", "mirror_args", "parallel"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "kube" / "spec.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "replace"):
                continue
            of_placement = bool(node.args) and isinstance(node.args[0], ast.Attribute) \
                and node.args[0].attr == "placement"
            if not of_placement and any(k.arg in spec_fields for k in node.keywords):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, f"a ModelSpec changed outside kube/spec.py: {found}"
