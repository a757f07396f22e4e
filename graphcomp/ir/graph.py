"""The graph: immutable nodes kept in a ``networkx.DiGraph``, plus parameter storage.

Edges run from an input to its consumer and carry the argument ``slots`` they fill. Topology
questions (order, ancestors, cycles) are answered by networkx.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from graphcomp.errors import GraphError
from graphcomp.ir.dims import DimTable, Shape
from graphcomp.ir.node import Node, NodeRole, freeze_attrs, user_source_line

_graph_stack: list[Graph] = []
_default_graph: Graph | None = None
_graph_names = itertools.count()


@dataclass(frozen=True)
class ImplicitUpdate:
    """State that every compiled function computing ``trigger`` updates without being asked:
    ``parameter`` takes ``value`` after the call (batch norm's running statistics)."""

    parameter: Node
    value: Node
    trigger: Node


class Graph:
    """A static computation graph; also a context manager that makes it the default graph.

    >>> with Graph(name="demo") as g:
    ...     pass
    >>> g.name
    'demo'

    ``seed`` starts the graph's random generator (``gc.random``, ``gc.seed``); it is an int in
    ``[0, 2**64)``.
    """

    def __init__(self, name: str | None = None, seed: int = 0) -> None:
        self.name = name or f"graph{next(_graph_names)}"
        self.nx = nx.DiGraph()
        self.dims = DimTable()
        self.parameter_values: dict[int, np.ndarray] = {}
        self.parameter_names: dict[str, Node] = {}  # the first parameter given each name
        self.non_trainable: set[int] = set()  # parameter ids that optimizers leave alone
        self.implicit_updates: list[ImplicitUpdate] = []
        self._next_id = 0
        self._role: NodeRole = "forward"
        self._forward_of: int | None = None
        # A loop body (gc.scan) is a graph of its own inside an enclosing graph: a tensor of
        # an enclosing graph used in the body is captured as a placeholder of the body.
        self.parent: Graph | None = None
        self.captures: dict[int, Node] = {}  # enclosing node id -> its placeholder here
        # The random generator (graphcomp/random): its seed, the ids of the int64[2] state
        # parameter [seed, call] and of its advanced value, once a random node exists, and
        # how many random nodes (streams) were made.
        self.seed = check_seed(seed)
        self.random_state: int | None = None
        self.random_advance: int | None = None
        self.random_streams = 0

    # -- default-graph context ------------------------------------------------------------
    def __enter__(self) -> Graph:
        _graph_stack.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _graph_stack.remove(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {self.nx.number_of_nodes()} nodes>"

    # -- building -------------------------------------------------------------------------
    def add_node(
        self,
        op: str,
        inputs: Sequence[Node],
        attrs: dict[str, Any],
        shape: Shape,
        dtype: np.dtype,
        name: str | None = None,
        source: str | None = None,
    ) -> Node:
        """Create a node, record its edges, and return it. Ops call this; users call ops."""
        source = source or user_source_line()
        for node in inputs:
            if node.graph is not self:
                raise GraphError(
                    f"{op} at {source}: cannot use {node.describe()} of graph "
                    f"{node.graph.name!r} in an op of graph {self.name!r}; tensors of two graphs "
                    "cannot be mixed"
                )
        node = Node(
            id=self._next_id,
            op=op,
            inputs=tuple(inputs),
            attrs=freeze_attrs(attrs),
            shape=tuple(shape),
            dtype=np.dtype(dtype),
            graph=self,
            name=name,
            source=source,
            role=self._role,
            forward_of=self._forward_of,
        )
        self._next_id += 1
        self.nx.add_node(node.id, node=node)
        for slot, source_node in enumerate(node.inputs):
            if self.nx.has_edge(source_node.id, node.id):
                self.nx.edges[source_node.id, node.id]["slots"] += (slot,)
            else:
                self.nx.add_edge(source_node.id, node.id, slots=(slot,))
        return node

    def encloses(self, other: Graph) -> bool:
        """Whether ``other`` is this graph or one of the graphs this (body) graph lies in."""
        graph: Graph | None = self
        while graph is not None and graph is not other:
            graph = graph.parent
        return graph is other

    def depth(self) -> int:
        """How many loop bodies deep this graph lies (0 for a top-level graph)."""
        return 0 if self.parent is None else 1 + self.parent.depth()

    def adopt(self, node: Node, op: str, source: str) -> Node:
        """``node`` as seen by an op of this graph: itself, or, for a node of an enclosing
        graph, the placeholder that captures it here (made once per node).

        A node of an unrelated graph raises ``GraphError`` naming ``op`` and ``source``.
        """
        if node.graph is self:
            return node
        if self.parent is None or not self.parent.encloses(node.graph):
            inside = (" (a scan body can use tensors of the graphs it lies in)"
                      if self.parent else "")
            raise GraphError(
                f"{op} at {source}: cannot use {node.describe()} of graph "
                f"{node.graph.name!r} in an op of graph {self.name!r}; tensors of two graphs "
                f"cannot be mixed{inside}"
            )
        outer = self.parent.adopt(node, op, source)
        if outer.id not in self.captures:
            shape = outer.graph.dims.resolve_shape(outer.shape)
            self.captures[outer.id] = self.add_node(
                "placeholder", [], {}, shape, outer.dtype,
                name=outer.name or f"captured{outer.id}", source=outer.source,
            )
        return self.captures[outer.id]

    def add_implicit_update(self, parameter: Node, value: Node, trigger: Node) -> None:
        """Make every function compiled later that computes ``trigger`` also set ``parameter``
        to ``value`` (unless its own updates set that parameter)."""
        self.implicit_updates.append(ImplicitUpdate(parameter, value, trigger))

    @contextlib.contextmanager
    def role_scope(self, role: NodeRole, forward_of: Node | None = None) -> Iterator[None]:
        """Tag every node created inside with ``role`` (and the forward node it came from)."""
        saved = self._role, self._forward_of
        self._role = role
        self._forward_of = forward_of.id if forward_of is not None else None
        try:
            yield
        finally:
            self._role, self._forward_of = saved

    # -- queries --------------------------------------------------------------------------
    def node(self, node_id: int) -> Node:
        """The node with id ``node_id``."""
        return self.nx.nodes[node_id]["node"]

    def nodes(self) -> list[Node]:
        """All nodes, in creation order (which is a topological order)."""
        return [self.node(i) for i in sorted(self.nx.nodes)]

    def check_acyclic(self) -> None:
        """Raise ``GraphError`` naming the nodes of a cycle, if there is one."""
        if nx.is_directed_acyclic_graph(self.nx):
            return
        cycle = nx.find_cycle(self.nx)
        ids = [a for a, _ in cycle] + [cycle[0][0]]  # back to where it started
        names = " -> ".join(f"{self.node(i).op} {self.node(i).label()}" for i in ids)
        raise GraphError(f"graph {self.name!r} has a cycle: {names}; a graph must be acyclic")

    def ancestors(self, nodes: Iterable[Node]) -> set[int]:
        """Ids of ``nodes`` and every node they depend on."""
        result: set[int] = set()
        for node in nodes:
            if node.id not in result:
                result |= nx.ancestors(self.nx, node.id)
                result.add(node.id)
        return result

    def schedule(self, outputs: Iterable[Node]) -> list[Node]:
        """The nodes ``outputs`` need, in a deterministic topological order (pruned)."""
        self.check_acyclic()
        needed = self.ancestors(outputs)
        order = nx.lexicographical_topological_sort(self.nx.subgraph(needed))
        return [self.node(i) for i in order]


def check_seed(seed: object) -> int:
    """``seed`` if it is an int in ``[0, 2**64)``, else ``GraphError``."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and (
            0 <= int(seed) < 2**64):
        return int(seed)
    raise GraphError(f"a random seed must be an int in [0, 2**64), got {seed!r}")


def current_graph() -> Graph:
    """The innermost ``with Graph():`` block's graph, else a process-wide default graph."""
    global _default_graph
    if _graph_stack:
        return _graph_stack[-1]
    if _default_graph is None:
        _default_graph = Graph(name="default")
    return _default_graph


def reset_default_graph() -> Graph:
    """Replace the process-wide default graph with a new empty one and return it."""
    global _default_graph
    _default_graph = Graph(name="default")
    return _default_graph
