"""The compiled step as a person reads it: each call of the driver with the graph nodes it
computes (their ``gc.format`` lines) and the user's source line that made each node.

The listing is built from the backend's records, outside the generated module's text, so the
kernel cache key does not change with file names or line numbers.

>>> import graphcomp as gc, numpy as np
>>> with gc.Graph():
...     x = gc.placeholder((4,), "float64", name="x")
...     y = gc.tanh(x) * 2.0
>>> f = gc.compile([x], y, backend="numba")
>>> print(kernel_listing(f).splitlines()[0])
k0(x_x.reshape(4), multiply3.reshape(4), 4)
"""

from __future__ import annotations

from typing import Any

from graphcomp.errors import GraphcompError
from graphcomp.inspect.listing import format_node


def kernel_listing(function: Any) -> str:
    """Every call of ``function``'s compiled step, each followed by the nodes it computes.

    Nodes that the passes made (a batched product, a copy) show their description instead of
    a graph line. Only backends that generate code have a listing (not ``numpy``).
    """
    calls = getattr(function._executable, "step_calls", None)
    if calls is None:
        raise GraphcompError(f"backend {function.backend!r} generates no code to list")
    graph = function.program.graph
    lines = []
    for text, nodes in calls():
        lines.append(text)
        for node_id, description in nodes:
            if node_id is None:  # made by a pass: no line of the user's graph
                lines.append(f"    {description}")
                continue
            node = graph.node(node_id)
            lines.append(f"    {format_node(node):<64}  {node.source}")
    return "\n".join(lines)
