"""``adjoint_graph``: the backward computation of a loss, and the forward values it keeps alive."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import networkx as nx

from graphcomp import dtypes
from graphcomp.autodiff import grad
from graphcomp.inspect.bytes import (
    ByteCount,
    byte_count,
    checkpoint_bytes,
    format_bytes,
    recomputed_bytes,
    shared_carry_stacks,
    stacked_bytes_per_step,
)
from graphcomp.ir import Node
from graphcomp.loops import is_recomputed, is_residual
from graphcomp.ops import Tensor

# A node of the adjoint graph: built by the adjoint pass, or a forward value it reads.
AdjointGraphRole = Literal["adjoint", "residual"]


def adjoint_graph(loss: Tensor, wrt: Tensor | Sequence[Tensor]) -> nx.DiGraph:
    """The adjoint computation of ``loss`` w.r.t. ``wrt``, plus the forward values it reads.

    Builds the gradients (as ``gc.grad`` does: the nodes are added to the loss's graph) and
    returns a ``networkx.DiGraph`` of only the nodes that build them (``role="adjoint"``) and
    the forward nodes they read, their *residuals* (``role="residual"``): what the backward
    pass keeps alive. Node attributes: op, shape, dtype, name, role, forward_of, and for each
    residual ``bytes``: an int for a static shape, else a formula such as ``"256*N"`` (bytes
    per unit of the symbolic dim N); what a scan stacks for the gradient (``scan_output``
    residuals: carries, body values) also ``bytes_per_step``. Graph attributes:
    ``gradients`` and ``wrt`` (node ids) and ``residual_bytes`` (the residuals' total, same
    form). A stacked residual of a scan with ``checkpoint=k`` counts one segment of
    ``min(T, k)`` steps, and the carries it keeps (``ceil(T/k)`` of each leaf) join the total.
    A stacked carry kept in the buffer of another stack (``graphcomp.loops.shared_stacks``: rnn's
    ``h_{t-1}`` and ``h_t``) counts the one row it adds to that buffer, none per step.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     x = gc.placeholder((None, 3), "float64", name="x")
    ...     w = gc.parameter(np.ones(3), name="w")
    ...     A = gc.adjoint_graph(gc.sum(gc.exp(x * w)), w)
    >>> sorted(A.nodes[n]["op"] for n in A if A.nodes[n]["role"] == "residual")
    ['exp', 'placeholder']
    >>> A.graph["residual_bytes"]
    '48*N'
    """
    targets = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    graph = loss.graph
    first_new_id = max(graph.nx.nodes, default=-1) + 1
    gradients = grad(loss, targets)
    # A scan's stacked carries are made by its VJP but are forward values: residuals.
    built = {i for i in graph.ancestors([g.node for g in gradients])
             if i >= first_new_id and graph.node(i).role == "adjoint"}
    residuals = {inp.id for i in built for inp in graph.node(i).inputs if inp.id not in built}
    out = nx.DiGraph(
        name=f"adjoint of {loss.node.label()}",
        gradients=[g.node.id for g in gradients],
        wrt=[t.node.id for t in targets],
    )
    total: ByteCount = Counter()
    checkpointed = {graph.node(i).inputs[0].id for i in residuals
                    if is_recomputed(graph.node(i))}
    for scan in sorted(checkpointed):  # the carries kept every k steps
        total.update(checkpoint_bytes(graph.node(scan)))
    for node_id in sorted(built | residuals):
        node = graph.node(node_id)
        attrs = _node_attrs(node, "adjoint" if node_id in built else "residual")
        if node_id in residuals:
            count = _residual_count(node)
            total.update(count)
            attrs["bytes"] = format_bytes(count)
            if is_residual(node):
                per_step = stacked_bytes_per_step(node.inputs[0], node.attrs["index"])
                attrs["bytes_per_step"] = format_bytes({} if _shares(node) else per_step)
        out.add_node(node_id, **attrs)
    for a, b, data in graph.nx.subgraph(built | residuals).edges(data=True):
        if b in built:
            out.add_edge(a, b, slots=data["slots"], residual=a in residuals)
    out.graph["residual_bytes"] = format_bytes(total)
    return out


def _residual_count(node: Node) -> ByteCount:
    """The bytes a residual holds: a stacked carry kept in the buffer of another stack read
    (``shared_carry_stacks``) adds one row to it."""
    if _shares(node):
        return stacked_bytes_per_step(node.inputs[0], node.attrs["index"])
    if is_recomputed(node):
        return recomputed_bytes(node)
    return byte_count(node)


def _shares(node: Node) -> bool:
    return is_residual(node) and node.attrs["index"] in shared_carry_stacks(node.inputs[0])


def _node_attrs(node: Node, role: AdjointGraphRole) -> dict:
    return {
        "op": node.op,
        "shape": node.graph.dims.resolve_shape(node.shape),
        "dtype": str(node.dtype),
        "type": dtypes.short_name(node.dtype),
        "name": node.name,
        "role": role,
        "forward_of": node.forward_of,
        "source": node.source,
    }
