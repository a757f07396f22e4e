"""Graphviz DOT export of a graph, forward and adjoint nodes styled apart.

Forward nodes are white boxes (parameters bold, inputs grey); adjoint nodes are orange ovals
that name the forward node they came from. An edge from a forward node into an adjoint node is
a *residual* read (a forward value the backward pass keeps alive) and is drawn dashed blue.
Rendering to SVG/PNG runs the Graphviz ``dot`` program; DOT text needs nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from graphcomp import dtypes
from graphcomp.errors import GraphcompError
from graphcomp.inspect.listing import _constant_str, body_lines, format_node
from graphcomp.ir import Node, shape_str
from graphcomp.loops import SCAN
from graphcomp.ops import Tensor

# DOT text, or an image rendered by Graphviz's ``dot`` program.
DotFormat = Literal["dot", "svg", "png"]
FORMATS: tuple[DotFormat, ...] = get_args(DotFormat)

_FORWARD_STYLE = 'shape=box, style="rounded,filled", fillcolor="#ffffff", color="#444444"'
_SOURCE_STYLE = 'shape=box, style="rounded,filled", fillcolor="#e8e8e8", color="#444444"'
_PARAMETER_STYLE = 'shape=box, style="rounded,filled,bold", fillcolor="#e3ecf9", color="#1f4e96"'
_ADJOINT_STYLE = 'shape=ellipse, style=filled, fillcolor="#fde3c8", color="#c0621b"'
_RESIDUAL_EDGE = 'style=dashed, color="#1f77b4", penwidth=1.5'
_ADJOINT_EDGE = 'color="#c0621b"'


def to_dot(
    tensors: Tensor | Sequence[Tensor], path: str | Path | None = None, format: DotFormat = "dot"
) -> str:
    """Graphviz DOT text of ``tensors`` and everything they depend on; optionally write a file.

    With ``path``, the graph is written there as DOT text (``format="dot"``) or rendered by
    the Graphviz ``dot`` program (``"svg"``, ``"png"``); a missing ``dot`` raises
    ``GraphcompError`` naming it. The DOT text is returned in every case.

    >>> # gc.to_dot([loss, *grads], "mlp.svg", format="svg")
    """
    if format not in FORMATS:
        raise GraphcompError(f"to_dot: format must be one of {FORMATS}, got {format!r}")
    if format != "dot" and path is None:
        raise GraphcompError(f"to_dot: format={format!r} needs a path to write the image to")
    items = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    text = dot_source(items)
    if path is not None:
        _write(text, Path(path), format)
    return text


def dot_source(items: Sequence[Tensor]) -> str:
    """The DOT text (see ``to_dot``)."""
    graph = items[0].graph
    nodes = graph.schedule([t.node for t in items])
    outputs = {t.node.id for t in items}
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10];', '  edge [color="#444444"];']
    for node in nodes:
        extra = ", peripheries=2" if node.id in outputs else ""
        lines.append(f"  n{node.id} [label={_quote(_label(node))}, {_style(node)}{extra}];")
    for node in nodes:
        for inp in dict.fromkeys(node.inputs):  # one edge per input, even if used twice
            lines.append(f"  n{inp.id} -> n{node.id}{_edge_style(inp, node)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(node: Node) -> str:
    type_str = dtypes.short_name(node.dtype) + shape_str(node.graph.dims.resolve_shape(node.shape))
    head = f"%{node.id} {node.op}"
    if node.name:
        head += f' "{node.name}"'
    elif node.op == "constant":
        head += f" {_constant_str(node.attrs['value'])}"
    lines = [head, type_str]
    if node.role == "adjoint" and node.forward_of is not None:
        lines.append(f"adjoint of %{node.forward_of} {node.graph.node(node.forward_of).op}")
    if node.op == SCAN:  # one node, its body listed beneath
        lines[1:2] = [format_node(node).split(" : ", 1)[1].split("  #")[0]]
        lines += [line.strip() for line in body_lines(node.attrs["body"], "")]
    return "\n".join(lines)


def _style(node: Node) -> str:
    if node.role == "adjoint":
        return _ADJOINT_STYLE
    if node.op == "parameter":
        return _PARAMETER_STYLE
    if node.op in ("placeholder", "constant"):
        return _SOURCE_STYLE
    return _FORWARD_STYLE


def _edge_style(source: Node, target: Node) -> str:
    if target.role != "adjoint":
        return ""
    if source.role != "adjoint":
        return f" [{_RESIDUAL_EDGE}]"
    return f" [{_ADJOINT_EDGE}]"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _write(text: str, path: Path, format: DotFormat) -> None:
    if format == "dot":
        path.write_text(text)
        return
    program = shutil.which("dot")
    if program is None:
        raise GraphcompError(
            f"to_dot: rendering {format.upper()} needs the Graphviz program 'dot', which is not "
            "on PATH; install Graphviz (apt install graphviz, brew install graphviz, conda "
            "install graphviz) or write DOT text with format='dot'"
        )
    result = subprocess.run(
        [program, f"-T{format}", "-o", str(path)], input=text.encode(), capture_output=True,
        check=False, timeout=120,
    )
    if result.returncode != 0:
        raise GraphcompError(
            f"to_dot: 'dot -T{format}' failed with exit code {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
