"""Text listing of a graph, one node per line (like a jaxpr)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.inspect.bytes import format_bytes, shared_carry_stacks, stacked_bytes_per_step
from graphcomp.ir import Node, shape_str
from graphcomp.loops import SCAN, ScanBody, is_residual, output_count, output_type, stacked_leaf
from graphcomp.ops import Tensor


def _type_str(node: Node) -> str:
    return dtypes.short_name(node.dtype) + shape_str(node.graph.dims.resolve_shape(node.shape))


def _attr_str(node: Node, key: str, value: Any) -> str:
    if isinstance(value, tuple):
        # Symbols in shape-like attrs are shown in their unified form.
        items = [node.graph.dims.resolve(v) if isinstance(v, str) else v for v in value]
        return f"{key}=({','.join(str(v) for v in items)})"
    return f"{key}={value}"


def _constant_str(value: np.ndarray) -> str:
    if value.size <= 4:
        return np.array2string(value, separator=",").replace("\n", "")
    return f"<{value.size} values>"


def _adjoint_note(node: Node) -> str:
    """``adjoint of %7 (matmul)``: the forward node may not be in the listing, so name its op."""
    if node.forward_of is None:
        return "adjoint"
    return f"adjoint of %{node.forward_of} ({node.graph.node(node.forward_of).op})"


def format_node(node: Node) -> str:
    """One listing line: ``%7 = matmul %1 %3 : f64[N,10]``."""
    if node.op == SCAN:
        return _scan_line(node)
    if node.op == "constant":
        rhs = f"constant {_constant_str(node.attrs['value'])}"
    elif node.op in ("placeholder", "parameter"):
        rhs = f'{node.op} "{node.name}"' if node.name else node.op
    else:
        attrs = ", ".join(_attr_str(node, k, v) for k, v in sorted(node.attrs.items()))
        op = f"{node.op}[{attrs}]" if attrs else node.op
        rhs = " ".join([op] + [f"%{i.id}" for i in node.inputs])
    line = f"%{node.id} = {rhs} : {_type_str(node)}"
    notes = []
    if node.name and node.op not in ("placeholder", "parameter"):
        notes.append(f'"{node.name}"')
    if node.role == "adjoint":
        notes.append(_adjoint_note(node))
    if is_residual(node):
        notes.append(_residual_note(node))
    if notes:
        line = f"{line:<60}  # {'; '.join(notes)}"
    return line


def _residual_note(node: Node) -> str:
    scan, index = node.inputs[0], node.attrs["index"]
    per_step = format_bytes(stacked_bytes_per_step(scan, index))
    carries, ys = output_count(scan)
    what = ("the carry each step started from" if index < 2 * carries + ys
            else f"body %{stacked_leaf(scan, index).id} of each step")
    if index in shared_carry_stacks(scan):
        return (f"residual: {what}, kept in the buffer of the stack of the values it was "
                f"made from ({per_step} bytes in all: one row more)")
    if scan.attrs.get("checkpoint") is not None:
        return (f"residual: {what} ({per_step} bytes per step, recomputed from the carry "
                f"kept every {scan.attrs['checkpoint']} steps)")
    return f"residual: {what} ({per_step} bytes per step)"


def _scan_line(node: Node) -> str:
    """``%3 = scan[reverse=False, T=N] %2 %0 %1 : (f64[2], f64[N,2])``: the carry and ys."""
    carries, ys = output_count(node)
    types = []
    for i in range(carries + ys):
        shape, dtype = output_type(node, i)
        types.append(dtypes.short_name(dtype) + shape_str(node.graph.dims.resolve_shape(shape)))
    trip = node.graph.dims.resolve(node.shape[0])
    head = f"scan[reverse={node.attrs['reverse']}, T={trip}]"
    if node.attrs.get("checkpoint") is not None:
        head = f"{head[:-1]}, checkpoint={node.attrs['checkpoint']}]"
    line = f"%{node.id} = {' '.join([head] + [f'%{i.id}' for i in node.inputs])}"
    line += f" : ({', '.join(types)})"
    if node.role == "adjoint":
        line = f"{line:<60}  # {_adjoint_note(node)}"
    return line


def _ids(nodes: Sequence[Node]) -> str:
    return " ".join(f"%{n.id}" for n in nodes) or "-"


def body_lines(body: ScanBody, indent: str = "    ") -> list[str]:
    """The listing of a scan body, indented, nested bodies beneath their scans."""
    invariants = ", ".join(f"%{p.id} = %{outer}" for outer, p in body.graph.captures.items())
    lines = [f"{indent}body: carry {_ids(body.carry_in)}; x {_ids(body.x_in)}; "
             f"invariants {invariants or '-'}"]
    for node in body.schedule:
        lines.append(indent + format_node(node))
        if node.op == SCAN:
            lines += body_lines(node.attrs["body"], indent + "    ")
    lines.append(f"{indent}return {_ids(body.outputs)}")
    return lines


def format(tensors: Tensor | Sequence[Tensor]) -> str:
    """Listing of every node the given tensors depend on, in topological order.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     x = gc.placeholder((None, 3), "float64", name="x")
    ...     W = gc.parameter(np.ones((3, 2)), name="W")
    ...     y = gc.tanh(x @ W)
    >>> print(gc.format(y))
    %0 = placeholder "x" : f64[N,3]
    %1 = parameter "W" : f64[3,2]
    %2 = matmul %0 %1 : f64[N,2]
    %3 = tanh %2 : f64[N,2]
    return %3
    """
    items = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if not items:
        return ""
    graph = items[0].graph
    schedule = graph.schedule([t.node for t in items])
    lines = []
    for node in schedule:
        lines.append(format_node(node))
        if node.op == SCAN:  # the body beneath its scan
            lines += body_lines(node.attrs["body"])
    outs = ", ".join(f"%{t.node.id}" for t in items)
    lines.append(f"return {outs}")
    return "\n".join(lines)
