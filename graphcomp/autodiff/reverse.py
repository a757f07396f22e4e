"""Reverse mode: turn an output node into gradient nodes of the same graph.

The pass, in one breath: take the nodes that lie on a path from ``wrt`` to the output, walk them
in reverse topological order, and for each node that has received a cotangent apply its op's VJP
rule, adding the results into the cotangents of its inputs. Every node the pass creates is an
ordinary node (so gradients of gradients work), tagged ``role="adjoint"`` with the forward node
it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import networkx as nx
import numpy as np

from graphcomp import dtypes
from graphcomp.autodiff.custom import custom_calls_in, custom_rule_of
from graphcomp.errors import GraphError, ShapeError
from graphcomp.ir import DimMismatch, Graph, Node, shape_str
from graphcomp.loops import LOOP_OPS, SCAN, SCAN_OUTPUT
from graphcomp.ops import Tensor, as_tensor, get_op
from graphcomp.ops import functions as F


@overload
def grad(output: Tensor, wrt: Tensor, seed: Any = None, strict: bool = False) -> Tensor: ...
@overload
def grad(
    output: Tensor, wrt: Sequence[Tensor], seed: Any = None, strict: bool = False
) -> list[Tensor]: ...


def grad(
    output: Tensor, wrt: Tensor | Sequence[Tensor], seed: Any = None, strict: bool = False
) -> Tensor | list[Tensor]:
    """Gradient tensors of ``output`` with respect to ``wrt``, built in the same graph.

    ``wrt`` is one tensor (one gradient back) or a list (a list back, same order). A non-scalar
    ``output`` needs ``seed``, the cotangent (a tensor or array of the output's shape); the
    result is then the vector-Jacobian product ``seed · d output / d wrt``. A ``wrt`` the output
    does not depend on (or an integer/bool one) gets zeros of its shape, or ``GraphError`` when
    ``strict`` is true.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     w = gc.parameter(np.array([1.0, 2.0]), name="w")
    ...     loss = gc.sum(w * w)
    ...     (gw,) = gc.grad(loss, [w])
    >>> gc.compile([], gw)()
    array([2., 4.])
    """
    targets = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    graph = _check_same_graph(output, targets)
    cotangents = backpropagate(graph, output.node, _seed(output, seed), [t.node for t in targets])
    grads = [_gradient_or_zeros(t, cotangents, output, strict) for t in targets]
    return grads[0] if isinstance(wrt, Tensor) else grads


def backpropagate(
    graph: Graph, output: Node, seed: Tensor, wrt: Sequence[Node]
) -> dict[int, Tensor]:
    """The adjoint pass: cotangent of every node between ``wrt`` and ``output``, by node id."""
    return backpropagate_many(graph, [(output, seed)], wrt)


def backpropagate_many(
    graph: Graph, seeds: Sequence[tuple[Node, Tensor]], wrt: Sequence[Node]
) -> dict[int, Tensor]:
    """The adjoint pass from several outputs at once, each with its seed (a scan body's
    carry and y): cotangent of every node between ``wrt`` and the outputs, by node id."""
    on_path: set[int] = set()
    cotangent: dict[int, Tensor] = {}
    for output, seed in seeds:
        on_path |= _nodes_between(graph, output, wrt)
        _accumulate(graph, cotangent, output, seed)
    scan_outputs: dict[int, dict[int, Tensor]] = {}  # scan node id -> {output index: cotangent}
    # Reverse topological order: a node is visited after every consumer that feeds its cotangent.
    for node_id in reversed(list(nx.lexicographical_topological_sort(graph.nx.subgraph(on_path)))):
        node = graph.node(node_id)
        if node.op == SCAN_OUTPUT:  # one output of a scan: its scan's VJP takes them all
            if node_id in cotangent:
                _collect_output(scan_outputs, node, cotangent[node_id])
            continue
        g = scan_outputs.get(node_id) if node.op == SCAN else cotangent.get(node_id)
        if g is None or not _has_vjp(node):
            continue
        with graph.role_scope("adjoint", forward_of=node):
            inputs, input_grads = _vjp(node, g)
        for inp, gi in zip(inputs, input_grads, strict=True):
            if gi is None or inp.id not in on_path or not dtypes.is_float(inp.dtype):
                continue
            _check_gradient(node, inp, gi)
            _accumulate(graph, cotangent, inp, gi)
    return cotangent


def _accumulate(graph: Graph, cotangent: dict[int, Tensor], node: Node, g: Tensor) -> None:
    if node.id in cotangent:
        # Fan-out: the cotangents from several consumers add up.
        with graph.role_scope("adjoint", forward_of=node):
            g = F.add(cotangent[node.id], g)
    cotangent[node.id] = g


def _collect_output(scan_outputs: dict[int, dict[int, Tensor]], node: Node, g: Tensor) -> None:
    parts = scan_outputs.setdefault(node.inputs[0].id, {})
    index = node.attrs["index"]
    if index in parts:  # two nodes reading the same output
        with node.graph.role_scope("adjoint", forward_of=node):
            g = F.add(parts[index], g)
    parts[index] = g


def _vjp(node: Node, g: Any) -> tuple[Sequence[Node], Sequence[Tensor | None]]:
    """Apply the node's VJP rule (the user's for a ``custom_vjp`` call, else its op's).

    Returns the inputs the rule differentiates and one gradient (or None) per input.
    """
    custom = custom_rule_of(node)
    if custom is not None:
        return [x.node for x in custom.inputs], custom.vjp(g)
    if node.op == SCAN:
        from graphcomp.autodiff.scan import scan_vjp  # it builds on this module

        return node.inputs, scan_vjp(node, g)
    rule = get_op(node.op).vjp
    assert rule is not None, f"{node.op} has no VJP rule"  # callers check _has_vjp(node) first
    inputs = [Tensor(i) for i in node.inputs]
    return node.inputs, rule(g, Tensor(node), inputs, dict(node.attrs))


def _has_vjp(node: Node) -> bool:
    if custom_rule_of(node) is not None or node.op in LOOP_OPS:
        return True
    op = get_op(node.op)
    return op.differentiable and op.vjp is not None


def _nodes_between(graph: Graph, output: Node, wrt: Sequence[Node]) -> set[int]:
    """ancestors(output) ∩ (wrt ∪ descendants(wrt)): the only nodes worth differentiating.

    Descendants are followed only through nodes that carry gradients (float values with a VJP
    rule), so ``stop_gradient``, comparisons and integer casts cut the path here already; a
    custom_vjp call links its inputs straight to its output, whatever its body does.
    """
    upstream = nx.ancestors(graph.nx, output.id) | {output.id}
    carriers = nx.subgraph_view(graph.nx, filter_node=lambda i: _carries_gradient(graph.node(i)))
    calls = custom_calls_in(graph)
    if calls:
        carriers = nx.DiGraph(carriers)
        for call in calls:
            carriers.add_edges_from((x.node.id, call.output.node.id) for x in call.inputs)
    downstream: set[int] = set()
    for node in wrt:
        downstream.add(node.id)
        if node.id in carriers:
            downstream |= nx.descendants(carriers, node.id)
    return upstream & downstream


def _carries_gradient(node: Node) -> bool:
    if node.op == SCAN:  # its value is the tuple of its outputs
        return True
    if node.op == SCAN_OUTPUT:
        return dtypes.is_float(node.dtype)
    return dtypes.is_float(node.dtype) and (get_op(node.op).kind == "source" or _has_vjp(node))


def _seed(output: Tensor, seed: Any) -> Tensor:
    if not dtypes.is_float(output.dtype):
        raise GraphError(
            f"grad: the output {output.node.describe()} has dtype {output.dtype}; only float "
            "outputs can be differentiated"
        )
    graph = output.graph
    with graph.role_scope("adjoint", forward_of=output.node):
        if seed is None:
            if output.ndim != 0:
                raise GraphError(
                    f"grad: the output {output.node.describe()} has shape "
                    f"{shape_str(output.shape)}, not a scalar; pass seed=<cotangent of that "
                    "shape> (e.g. gc.ones_like(output)) to get a vector-Jacobian product"
                )
            return as_tensor(np.ones((), output.dtype), graph=graph)
        seed_t = as_tensor(seed, output.dtype, graph=graph)
        if seed_t.graph is not graph:
            raise GraphError("grad: the seed belongs to another graph than the output")
        _check_seed_shape(output, seed_t)
        return F.cast(seed_t, output.dtype)


def _check_seed_shape(output: Tensor, seed: Tensor) -> None:
    dims = output.graph.dims
    mismatch = ShapeError(
        f"grad: seed has shape {shape_str(seed.shape)}, but the output "
        f"{output.node.describe()} has shape {shape_str(output.shape)}; they must be equal"
    )
    if seed.ndim != output.ndim:
        raise mismatch
    for a, b in zip(output.shape, seed.shape, strict=True):
        try:
            dims.unify(a, b)
        except DimMismatch:
            raise mismatch from None


def _check_gradient(node: Node, inp: Node, g: Tensor) -> None:
    """A VJP rule must return a gradient of its input's shape and dtype."""
    dims = node.graph.dims
    if dims.resolve_shape(g.node.shape) != dims.resolve_shape(inp.shape) or g.dtype != inp.dtype:
        custom = custom_rule_of(node)
        rule = f"custom_vjp rule of {custom.name!r}" if custom else f"VJP rule of op {node.op!r}"
        raise ShapeError(
            f"the {rule} (at {node.label()}, created at {node.source}) returned a gradient "
            f"{dtypes.short_name(g.dtype)}{shape_str(g.shape)} for input {inp.label()}, which is "
            f"{dtypes.short_name(inp.dtype)}{shape_str(dims.resolve_shape(inp.shape))}; a "
            "gradient must have its input's shape and dtype"
        )


def _gradient_or_zeros(
    target: Tensor, cotangent: dict[int, Tensor], output: Tensor, strict: bool
) -> Tensor:
    if target.node.id in cotangent and dtypes.is_float(target.dtype):
        return cotangent[target.node.id]
    if strict:
        reason = (
            f"it has dtype {target.dtype}, and integer/bool values carry no gradient"
            if not dtypes.is_float(target.dtype)
            else "the output does not depend on it (or only through stop_gradient/integer ops)"
        )
        raise GraphError(
            f"grad(strict=True): no gradient of {output.node.describe()} with respect to "
            f"{target.node.describe()}: {reason}"
        )
    with target.graph.role_scope("adjoint", forward_of=target.node):
        return F.zeros_like(target)


def _check_same_graph(output: Tensor, targets: list[Tensor]) -> Graph:
    if not isinstance(output, Tensor):
        raise GraphError(f"grad: output must be a graphcomp Tensor, got {type(output).__name__}")
    for t in targets:
        if not isinstance(t, Tensor):
            raise GraphError(f"grad: wrt must hold graphcomp Tensors, got {type(t).__name__}")
        if t.graph is not output.graph:
            raise GraphError(
                f"grad: {t.node.describe()} belongs to graph {t.graph.name!r}, the output to "
                f"graph {output.graph.name!r}"
            )
    return output.graph
