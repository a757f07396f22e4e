"""The graph-owned generator state: one ``int64[2]`` parameter ``[seed, call]`` per graph.

Made when a graph's first random node is built, together with its advanced value
``state + [0, 1]``; ``gc.compile`` adds the update ``state <- state + [0, 1]`` to every function
that draws (``runtime/program.py``), so each call of it draws new numbers. The seed is stored
as the bits of a uint64 in an int64.
"""

from __future__ import annotations

import numpy as np

from graphcomp.ir import Graph
from graphcomp.ir.graph import check_seed
from graphcomp.ir.scope import root_scope
from graphcomp.ops import Parameter, Tensor, functions

STATE_NAME = "random.state"


def _initial(seed: int) -> np.ndarray:
    return np.array([np.uint64(seed).view(np.int64), 0], dtype=np.int64)


def state(graph: Graph) -> Parameter:
    """The graph's generator state ``[seed, call]`` (made on first use), for checkpoints.

    >>> import graphcomp as gc
    >>> with gc.Graph(seed=7) as g, gc.name_scope("encoder"):
    ...     gc.random.state(g).name, gc.random.state(g).trainable
    ('random.state', False)
    """
    if graph.random_state is None:
        # Graph-wide, whatever scope the first random node is made in; never trained.
        with graph, root_scope():
            param = functions.parameter(_initial(graph.seed), name=STATE_NAME, trainable=False)
            advance = param + functions.constant(np.array([0, 1], dtype=np.int64))
        graph.random_state, graph.random_advance = param.node.id, advance.node.id
    return Parameter(graph.node(graph.random_state))


def existing_state(graph: Graph) -> Parameter | None:
    """The graph's generator state if a random node (or ``state``) has made it, else None."""
    return None if graph.random_state is None else Parameter(graph.node(graph.random_state))


def next_stream(graph: Graph) -> tuple[Tensor, int]:
    """The state tensor and a new stream number, for a new random node of ``graph``."""
    param = state(graph)
    graph.random_streams += 1
    return param, graph.random_streams - 1


def seed(graph: Graph, n: int) -> None:
    """Restart ``graph``'s generator from seed ``n`` (an int in ``[0, 2**64)``), call 0.

    Compiled functions see the new state at their next call.

    >>> import graphcomp as gc
    >>> with gc.Graph() as g:
    ...     gc.seed(g, 42)
    >>> g.seed
    42
    """
    graph.seed = check_seed(n)
    if graph.random_state is not None:
        # In place: compiled functions hold the storage array itself.
        graph.parameter_values[graph.random_state][...] = _initial(graph.seed)
