"""The graph: immutable nodes kept in a ``networkx.DiGraph``, plus parameter storage.

Edges run from an input to its consumer and carry the argument ``slots`` they fill. Topology
questions (order, ancestors, cycles) are answered by networkx.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
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


class ParameterStore(dict[int, np.ndarray]):
    """The graph's parameter values by node id: a dict whose reads first fetch a value that
    a device holds newer than the host array (``defer``).

    A backend that keeps parameters on a device (``backend="cuda"``) registers a fetch
    after a step instead of copying every new value back; any read of the value (``.value``,
    ``assign``, checkpoints, another backend's call) runs the fetch first, which writes the
    device's value into the same host array. Writes go to that array, as before.

    >>> store = ParameterStore({0: np.zeros(2)})
    >>> store.defer(0, lambda: store.raw(0).fill(1.0))
    >>> store[0], store.pending
    (array([1., 1.]), False)
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._fetch: dict[int, tuple[object, Callable[[], None]]] = {}

    def defer(self, key: int, fetch: Callable[[], None], owner: object = None) -> None:
        """Run ``fetch`` (which fills ``raw(key)``) before the next read of ``key``."""
        self._fetch[key] = (owner, fetch)

    def deferred_by(self, key: int) -> object:
        """The owner of the fetch pending for ``key``, or None."""
        entry = self._fetch.get(key)
        return entry[0] if entry is not None else None

    def cancel(self, key: int) -> None:
        """Drop the fetch pending for ``key`` (its owner wrote the host array itself)."""
        self._fetch.pop(key, None)

    @property
    def pending(self) -> bool:
        """Whether some value is newer on a device than in its host array."""
        return bool(self._fetch)

    def fetch_all(self) -> None:
        """Run every pending fetch (host arrays current)."""
        for key in list(self._fetch):
            self._run(key)

    def raw(self, key: int) -> np.ndarray:
        """The host array, without fetching (for the fetch itself)."""
        return dict.__getitem__(self, key)

    def _run(self, key: int) -> None:
        entry = self._fetch.pop(key, None)
        if entry is not None:
            entry[1]()

    def __getitem__(self, key: int) -> np.ndarray:
        if self._fetch:
            self._run(key)
        return dict.__getitem__(self, key)

    def get(self, key: int, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __iter__(self) -> Iterator[int]:
        self.fetch_all()
        return super().__iter__()

    def values(self) -> Any:
        self.fetch_all()
        return super().values()

    def items(self) -> Any:
        self.fetch_all()
        return super().items()


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
        self.parameter_values = ParameterStore()
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
