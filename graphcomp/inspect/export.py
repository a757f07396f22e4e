"""Export a graph to networkx for analysis and drawing."""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from graphcomp import dtypes
from graphcomp.ops import Tensor


def to_networkx(tensors: Tensor | Sequence[Tensor]) -> nx.DiGraph:
    """A ``networkx.DiGraph`` of the given tensors and everything they depend on.

    Node keys are node ids; attributes: op, shape, dtype, name, role, forward_of, source, attrs.
    Edges carry ``slots`` (which argument positions of the consumer they feed).

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     x = gc.placeholder((None, 3), "float64", name="x")
    ...     y = gc.exp(x)
    >>> G = gc.to_networkx(y)
    >>> G.nodes[y.node.id]["op"], G.nodes[y.node.id]["shape"], list(G.edges)
    ('exp', ('N', 3), [(0, 1)])
    """
    items = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    graph = items[0].graph
    keep = graph.ancestors([t.node for t in items])
    out = nx.DiGraph(name=graph.name)
    for node_id in sorted(keep):
        node = graph.node(node_id)
        out.add_node(
            node_id,
            op=node.op,
            shape=graph.dims.resolve_shape(node.shape),
            dtype=str(node.dtype),
            type=dtypes.short_name(node.dtype),
            name=node.name,
            role=node.role,
            forward_of=node.forward_of,
            source=node.source,
            attrs={k: v for k, v in node.attrs.items() if k != "value"},
        )
    for a, b, data in graph.nx.subgraph(keep).edges(data=True):
        out.add_edge(a, b, slots=data["slots"])
    return out
