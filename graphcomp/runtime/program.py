"""``Program``: what a compiled function computes, independent of any backend.

Built from the user's inputs, outputs and updates; validated once (same graph, no cycle, every
placeholder an output needs is an input, update shapes match), then handed to passes and to a
backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphcomp import dtypes
from graphcomp.errors import DTypeError, GraphError, ShapeError
from graphcomp.ir import DimTable, Graph, Node, shape_str
from graphcomp.ops import Parameter, Tensor
from graphcomp.ops.random_ops import RANDOM_OPS


@dataclass
class Program:
    """Inputs, outputs, parameter updates and the topologically sorted nodes that compute them."""

    graph: Graph
    inputs: list[Node]
    outputs: list[Node]
    updates: list[tuple[Node, Node]]  # (parameter node, new-value node)
    schedule: list[Node]
    # The graph's symbolic dims frozen at compile time: ops built later may tie more symbols
    # (x + a (5, 3) tensor fixes x's batch to 5) but must not change what this program accepts.
    dims: DimTable

    @property
    def parameters(self) -> list[Node]:
        """Parameter nodes read by the schedule."""
        return [n for n in self.schedule if n.op == "parameter"]


def _as_node(value: Any, what: str) -> Node:
    if not isinstance(value, Tensor):
        raise GraphError(f"{what} must be a graphcomp Tensor, got {type(value).__name__}")
    return value.node


def build_program(
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    updates: Sequence[tuple[Parameter, Tensor]] | Mapping[Parameter, Tensor] | None = None,
    implicit_updates: bool = True,
) -> Program:
    """Validate a compile request and return its ``Program``.

    With ``implicit_updates``, the graph's implicit updates (``Graph.add_implicit_update``)
    whose trigger the outputs or updates need are appended to the updates, unless an update
    of the request already sets that parameter.
    """
    input_nodes = [_as_node(t, "every input") for t in inputs]
    output_nodes = [_as_node(t, "every output") for t in outputs]
    pairs = list(updates.items()) if isinstance(updates, Mapping) else list(updates or [])
    update_nodes = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise GraphError("updates must be (parameter, new_value) pairs or a dict")
        update_nodes.append(
            (_as_node(pair[0], "an update target"), _as_node(pair[1], "an update value"))
        )

    all_nodes = input_nodes + output_nodes + [n for pair in update_nodes for n in pair]
    if not all_nodes:
        raise GraphError("compile needs at least one output or update")
    graph = all_nodes[0].graph
    for node in all_nodes:
        if node.graph is not graph:
            raise GraphError(
                f"{node.describe()} belongs to graph {node.graph.name!r}, but the other tensors "
                f"belong to graph {graph.name!r}; one function compiles one graph"
            )
    graph.check_acyclic()
    if implicit_updates:
        update_nodes += _implicit_updates(graph, output_nodes, update_nodes)

    seen: set[int] = set()
    for node in input_nodes:
        if node.op != "placeholder":
            raise GraphError(f"inputs must be placeholders; {node.describe()} is a {node.op}")
        if node.id in seen:
            raise GraphError(f"placeholder {node.label()} is listed twice among the inputs")
        seen.add(node.id)
    names = [n.name for n in input_nodes if n.name]
    if len(set(names)) != len(names):
        raise GraphError(f"two inputs share a name: {sorted(names)}")

    targets: set[int] = set()
    for target, value in update_nodes:
        if target.op != "parameter":
            raise GraphError(f"update target {target.describe()} is not a parameter")
        if target.id in targets:
            raise GraphError(f"parameter {target.label()} is updated twice")
        targets.add(target.id)
        want = graph.dims.resolve_shape(target.shape)
        got = graph.dims.resolve_shape(value.shape)
        if want != got:
            raise ShapeError(
                f"update of parameter {target.label()}: new value {value.label()} has shape "
                f"{shape_str(got)}, the parameter has {shape_str(want)}"
            )
        if value.dtype != target.dtype:
            raise DTypeError(
                f"update of parameter {target.label()}: new value has dtype {value.dtype}, the "
                f"parameter has {target.dtype}; cast it with .astype()"
            )

    roots = output_nodes + [value for _, value in update_nodes]
    schedule = graph.schedule(roots)
    if (_draws(graph, schedule) and graph.random_state is not None
            and graph.random_advance is not None and graph.random_state not in targets):
        # Every call that draws advances the generator: its next call draws new numbers.
        update_nodes.append((graph.node(graph.random_state), graph.node(graph.random_advance)))
        roots.append(update_nodes[-1][1])
        schedule = graph.schedule(roots)
        _check_random_shapes(graph, schedule, input_nodes)
    for node in schedule:
        if node.op == "placeholder" and node.id not in seen:
            needed_by = [r.label() for r in roots if node.id in graph.ancestors([r])]
            raise GraphError(
                f"placeholder {node.label()} ({dtypes.short_name(node.dtype)}"
                f"{shape_str(graph.dims.resolve_shape(node.shape))}, created at {node.source}) is "
                f"needed by {', '.join(needed_by)} but is not among the compiled function's inputs"
            )
    return Program(graph, input_nodes, output_nodes, update_nodes, schedule, graph.dims.copy())


def _implicit_updates(
    graph: Graph, outputs: list[Node], updates: list[tuple[Node, Node]]
) -> list[tuple[Node, Node]]:
    """The graph's implicit updates triggered by what ``outputs`` and ``updates`` compute."""
    if not graph.implicit_updates:
        return []
    needed = graph.ancestors(outputs + [value for _, value in updates])
    taken = {target.id for target, _ in updates}
    found = []
    for update in graph.implicit_updates:
        if update.trigger.id in needed and update.parameter.id not in taken:
            taken.add(update.parameter.id)
            found.append((update.parameter, update.value))
    return found


def _draws(graph: Graph, schedule: Sequence[Node]) -> bool:
    return graph.random_state is not None and any(n.op in RANDOM_OPS for n in schedule)


def _check_random_shapes(graph: Graph, schedule: Sequence[Node], inputs: Sequence[Node]) -> None:
    """A random node's symbolic dims must be bound by an input's shape at call time."""
    bound = {graph.dims.resolve(d) for node in inputs for d in node.shape}
    for node in schedule:
        if node.op not in RANDOM_OPS:
            continue
        for dim in graph.dims.resolve_shape(node.shape):
            if isinstance(dim, str) and dim not in bound:
                raise GraphError(
                    f"{node.describe()} (created at {node.source}) has the symbolic dimension "
                    f"{dim!r}, which no input of the compiled function has: its size would be "
                    "unknown at call time"
                )
