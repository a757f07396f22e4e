"""``gc.scan``: a loop over the leading axis of its inputs, as one node with a body graph.

``fn(carry, x) -> (carry, y)`` is traced once into a body ``Graph`` whose placeholders are the
carry leaves, the leaves of one step's ``x`` and the *invariants*: tensors of the enclosing
graphs that ``fn`` uses, captured as placeholders when an op first meets them
(``Graph.adopt``). The enclosing graph gets one ``scan`` node, inputs ``init leaves + xs leaves
+ invariants``, shape ``(T,)`` (its trip count), and ``scan_output`` nodes that pick its
outputs: the final carry leaves, the stacked ``y`` leaves and, for the gradient, the stacked
carry each step started from and the stacked values of the body nodes in ``body.residuals``
(residuals, made only when the VJP asks for them).

Neither op is a registry primitive: the numpy backend runs the body step by step
(``backends/numpy_backend.py``), the VJP is a reverse scan (``autodiff/scan.py``), and the
numba backend compiles the body once and runs the loop natively (``backends/numba/stages.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, GraphError, ShapeError
from graphcomp.ir import (
    Dim,
    DimMismatch,
    DimTable,
    Graph,
    Node,
    current_graph,
    shape_str,
    user_source_line,
)
from graphcomp.loops.tree import TreeDef, describe, flatten, unflatten
from graphcomp.ops import Tensor, as_tensor

SCAN = "scan"
SCAN_OUTPUT = "scan_output"
LOOP_OPS = frozenset({SCAN, SCAN_OUTPUT})


@dataclass(frozen=True, eq=False)
class ScanBody:
    """The traced body of a scan: a graph of its own, read-only once traced."""

    graph: Graph
    carry_in: tuple[Node, ...]
    x_in: tuple[Node, ...]
    invariant_in: tuple[Node, ...]
    carry_out: tuple[Node, ...]
    y_out: tuple[Node, ...]
    carry_tree: TreeDef
    y_tree: TreeDef
    dims: DimTable  # the body's symbols as traced (later ops in other graphs cannot tie them)
    schedule: tuple[Node, ...]
    source: str
    # Body nodes whose per-step values a gradient reads, stacked by the scan as outputs past
    # the stacked carries. Gradients append to it (never remove), so output indices stay valid.
    residuals: list[Node] = field(default_factory=list)

    @property
    def inputs(self) -> tuple[Node, ...]:
        return self.carry_in + self.x_in + self.invariant_in

    @property
    def outputs(self) -> tuple[Node, ...]:
        return self.carry_out + self.y_out

    def __repr__(self) -> str:
        return f"<scan body at {self.source}: {len(self.schedule)} nodes>"


def scan(
    fn: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None,
    length: int | None = None, reverse: bool = False, checkpoint: int | None = None,
) -> tuple[Any, Any]:
    """Loop ``carry, y = fn(carry, x)`` over the leading axis of ``xs``; return the final
    carry and the stacked ``y``.

    ``init``, ``xs`` and what ``fn`` returns may be tensors or tuples/lists/dicts of tensors;
    ``length`` gives the number of steps when there are no ``xs``; ``reverse=True`` runs from
    the last step to the first (``ys`` keep the order of ``xs``). ``fn`` is traced once; the
    tensors of the enclosing graph it uses are loop invariants. The leading axis may be
    symbolic, and of length 0 (the result is ``init`` and empty ``ys``). ``checkpoint=k``
    keeps, for the gradient, the carry every ``k`` steps instead of every step's residuals,
    and the backward pass recomputes the steps between (docs/loops.md, "Checkpointing").

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     xs = gc.placeholder((None, 2), "float64", name="xs")
    ...     total, partial = gc.scan(lambda c, x: (c + x, c + x), np.zeros(2), xs)
    >>> f = gc.compile([xs], [total, partial], backend="numpy")
    >>> f(np.ones((3, 2)))[1]
    array([[1., 1.],
           [2., 2.],
           [3., 3.]])
    """
    source = user_source_line()
    checkpoint = _checkpoint(checkpoint, source)
    init_leaves, carry_tree = flatten(init)
    x_leaves, x_tree = flatten(xs)
    given = [v for v in init_leaves + x_leaves if isinstance(v, Tensor)]
    graph = max((t.graph for t in given), key=Graph.depth) if given else current_graph()
    init_nodes = [_leaf(graph, v, source, "init") for v in init_leaves]
    x_nodes = [_leaf(graph, v, source, "xs") for v in x_leaves]
    trip = trip_count(graph, x_nodes, length, source)
    from graphcomp.loops.batching import batch_carry_free  # it imports graphcomp.autodiff

    body = trace_body(fn, graph, init_nodes, carry_tree, x_nodes, x_tree, source)
    # a recomputed stream is read step by step: nothing reading it moves out of the loop
    recomputed = any(is_recomputed(x) for x in x_nodes)
    batched = None if recomputed else batch_carry_free(body, graph, x_nodes)
    if batched is not None:  # carry-free work moved before the loop (loops/batching.py)
        x_nodes, step = batched
        body = trace_body(step, graph, init_nodes, carry_tree, x_nodes,
                          flatten(list(x_nodes))[1], source)
    invariants = list(body.graph.captures)  # ids of the enclosing graph's nodes, in order
    inputs = init_nodes + x_nodes + [graph.node(i) for i in invariants]
    node = make_scan_node(graph, body, inputs, trip, reverse, source, checkpoint)
    outputs = [scan_output(node, i) for i in range(len(body.outputs))]
    count = len(body.carry_out)
    return unflatten(carry_tree, outputs[:count]), unflatten(body.y_tree, outputs[count:])


def _checkpoint(k: Any, source: str) -> int | None:
    """``checkpoint`` as an int > 1, or None (1 and None: every step's residuals stored)."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise GraphError(f"scan at {source}: checkpoint must be an int >= 1 (store the carry "
                         f"every k steps) or None, got {k!r}")
    return int(k) if k > 1 else None


def _leaf(graph: Graph, value: Any, source: str, what: str) -> Node:
    if not isinstance(value, Tensor):
        try:
            value = as_tensor(value, graph=graph)
        except Exception:
            raise GraphError(f"scan at {source}: {what} holds a {type(value).__name__}; its "
                             "leaves must be tensors or arrays") from None
    return graph.adopt(value.node, SCAN, source)


def trip_count(graph: Graph, xs: Sequence[Node], length: Dim | None, source: str) -> Dim:
    """The number of steps: the leading axis shared by every ``xs`` leaf, or ``length``."""
    if length is not None and not (isinstance(length, str) or (
            isinstance(length, (int, np.integer)) and not isinstance(length, bool)
            and length >= 0)):
        raise ShapeError(f"scan at {source}: length must be an int >= 0, got {length!r}")
    dims = graph.dims
    for i, x in enumerate(xs):
        if x.ndim == 0:
            raise ShapeError(f"scan at {source}: xs leaf {i} ({x.describe()}) is 0-d; xs are "
                             "sliced along their leading axis")
    leading = [dims.resolve(x.shape[0]) for x in xs] + ([length] if length is not None else [])
    if not leading:
        raise GraphError(f"scan at {source}: give xs or length (the number of steps)")
    before = dims.snapshot()
    trip: Dim = leading[0]
    try:
        for d in leading[1:]:
            trip = dims.unify(trip, d)
    except DimMismatch:
        dims.restore(before)
        shapes = ", ".join(shape_str(dims.resolve_shape(x.shape)) for x in xs)
        extra = f" and length={length}" if length is not None else ""
        raise ShapeError(f"scan at {source}: xs leaves of shapes {shapes}{extra} do not share "
                         "one leading length") from None
    return int(trip) if isinstance(trip, (int, np.integer)) else trip


def trace_body(
    fn: Callable[[Any, Any], tuple[Any, Any]], parent: Graph, init: Sequence[Node],
    carry_tree: TreeDef, xs: Sequence[Node], x_tree: TreeDef, source: str,
) -> ScanBody:
    """Trace ``fn`` once into a body graph inside ``parent`` and check what it returns."""
    body = Graph(name=f"scan body at {source}")
    body.parent = parent
    with body:
        carry_in = [_placeholder(body, n, n.shape, f"carry{i}", source) for i, n in enumerate(init)]
        x_in = [_placeholder(body, n, n.shape[1:], f"x{i}", source) for i, n in enumerate(xs)]
        result = fn(unflatten(carry_tree, [Tensor(n) for n in carry_in]),
                    unflatten(x_tree, [Tensor(n) for n in x_in]))
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise GraphError(f"scan at {source}: the body must return (carry, y), got "
                             f"{type(result).__name__}")
        out_leaves, out_tree = flatten(result[0])
        if out_tree != carry_tree:
            raise GraphError(f"scan at {source}: the body returns a carry of structure "
                             f"{describe(out_tree)}, but init has {describe(carry_tree)}")
        carry_out = [_body_leaf(body, v, c.dtype, source) for v, c in zip(out_leaves, carry_in,
                                                                       strict=True)]
        y_leaves, y_tree = flatten(result[1])
        y_out = [_body_leaf(body, v, None, source) for v in y_leaves]
    for i, (old, new) in enumerate(zip(carry_in, carry_out, strict=True)):
        _check_carry(body, i, old, new, source)
    _check_sources(body, carry_in + x_in, source)
    _tie_enclosing_dims(body, parent, source)
    outputs = carry_out + y_out
    return ScanBody(body, tuple(carry_in), tuple(x_in), tuple(body.captures.values()),
                    tuple(carry_out), tuple(y_out), carry_tree, y_tree, body.dims.copy(),
                    tuple(body.schedule(outputs)), source)


def _placeholder(body: Graph, outer: Node, shape: Sequence[Dim], name: str, source: str) -> Node:
    resolved = outer.graph.dims.resolve_shape(shape)
    return body.add_node("placeholder", [], {}, resolved, outer.dtype, name=name, source=source)


def _body_leaf(body: Graph, value: Any, dtype: np.dtype | None, source: str) -> Node:
    if not isinstance(value, Tensor):
        try:
            value = as_tensor(value, dtype, graph=body)
        except Exception:
            raise GraphError(f"scan at {source}: the body returns a {type(value).__name__}; "
                             "its carry and y must be tensors") from None
    return body.adopt(value.node, SCAN, source)


def _check_carry(body: Graph, i: int, old: Node, new: Node, source: str) -> None:
    dims = body.dims
    what = (f"scan at {source}: the body's carry leaf {i} ({new.describe()}) is "
            f"{dtypes.short_name(new.dtype)}{shape_str(dims.resolve_shape(new.shape))}, but init "
            f"is {dtypes.short_name(old.dtype)}{shape_str(dims.resolve_shape(old.shape))}; the "
            "carry must keep its shape and dtype")
    if new.dtype != old.dtype:
        raise DTypeError(what)
    if new.ndim != old.ndim:
        raise ShapeError(what)
    try:
        for a, b in zip(old.shape, new.shape, strict=True):
            dims.unify(a, b)
    except DimMismatch:
        raise ShapeError(what) from None


def _check_sources(body: Graph, inputs: Sequence[Node], source: str) -> None:
    allowed = {n.id for n in inputs} | {n.id for n in body.captures.values()}
    for node in body.nodes():
        if node.op in ("parameter", "placeholder") and node.id not in allowed:
            raise GraphError(f"scan at {source}: the body creates {node.describe()}; create "
                             "parameters and placeholders outside the body and use them inside")


def _tie_enclosing_dims(body: Graph, parent: Graph, source: str) -> None:
    """Symbols the body found equal (or sized) are equal in the enclosing graph too."""
    roots, sizes = body.dims.constraints()
    before = parent.dims.snapshot()
    try:
        for symbol, root in roots.items():
            parent.dims.unify(symbol, root)
        for root, size in sizes.items():
            parent.dims.unify(root, size)
    except DimMismatch as exc:
        parent.dims.restore(before)
        raise ShapeError(f"scan at {source}: the body ties dimensions the enclosing graph "
                         f"keeps apart: {exc}") from None


def make_scan_node(
    graph: Graph, body: ScanBody, inputs: Sequence[Node], trip: Dim, reverse: bool, source: str,
    checkpoint: int | None = None,
) -> Node:
    """The ``scan`` node: inputs ``init + xs + invariants``, shape ``(trip,)``."""
    attrs: dict[str, Any] = {"body": body, "reverse": bool(reverse)}
    if checkpoint is not None:
        attrs["checkpoint"] = checkpoint
    return graph.add_node(SCAN, inputs, attrs, (trip,), np.dtype(bool), source=source)


def output_count(node: Node) -> tuple[int, int]:
    """(carry leaves, y leaves) of a scan node; stacked carries, then stacked residuals,
    follow them."""
    body: ScanBody = node.attrs["body"]
    return len(body.carry_out), len(body.y_out)


def output_type(node: Node, index: int) -> tuple[tuple[Dim, ...], np.dtype]:
    """Shape and dtype of output ``index`` of a scan node: a final carry leaf, a stacked y
    leaf, or (index past those) a stacked carry or a stacked residual: what the gradient reads."""
    body: ScanBody = node.attrs["body"]
    carries, _ = output_count(node)
    leaf = stacked_leaf(node, index)
    if index < carries:
        return body.dims.resolve_shape(leaf.shape), leaf.dtype
    return (node.shape[0], *body.dims.resolve_shape(leaf.shape)), leaf.dtype


def stacked_leaf(node: Node, index: int) -> Node:
    """The body node whose per-step value output ``index`` of scan ``node`` holds (for a final
    carry leaf: the carry placeholder)."""
    body: ScanBody = node.attrs["body"]
    carries, ys = output_count(node)
    if index < carries:
        return body.carry_in[index]
    if index < carries + ys:
        return body.y_out[index - carries]
    if index < 2 * carries + ys:
        return body.carry_in[index - carries - ys]
    if index < 2 * carries + ys + len(body.residuals):
        return body.residuals[index - 2 * carries - ys]
    raise IndexError(f"scan {node.label()} has no output {index}")


def residual_output(node: Node, body_node: Node) -> Tensor:
    """The stacked per-step values of ``body_node`` (a node of scan ``node``'s body) as an
    output of the scan; the body node joins ``body.residuals`` the first time."""
    body: ScanBody = node.attrs["body"]
    if body_node not in body.residuals:
        body.residuals.append(body_node)
    carries, ys = output_count(node)
    return scan_output(node, 2 * carries + ys + body.residuals.index(body_node))


def scan_output(node: Node, index: int) -> Tensor:
    """Output ``index`` of a scan node as a tensor of the node's graph."""
    shape, dtype = output_type(node, index)
    return Tensor(node.graph.add_node(SCAN_OUTPUT, [node], {"index": index}, shape, dtype,
                                      source=node.source))


def is_residual(node: Node) -> bool:
    """Whether ``node`` reads a scan's stacked carries (kept for its gradient)."""
    if node.op != SCAN_OUTPUT:
        return False
    return node.attrs["index"] >= sum(output_count(node.inputs[0]))


def shared_stacks(body: ScanBody, read: Collection[int], checkpoint: int | None = None
                  ) -> dict[int, int]:
    """Stacked carries kept in the buffer of a stacked y or residual: ``{output index of the
    stacked carry: output index of the stack it shares}``, for a scan whose outputs ``read``
    (indices) are read. A carry leaf that is also a computed per-step value (rnn: ``h_t`` is
    the new carry and tanh's output) has both stacks in one buffer of ``T + 1`` rows, two
    views shifted by a row; both backends store them so and the byte report counts them so.
    Each carry pairs with the first such stack read (the ys, then the residuals). A scan with
    ``checkpoint=k`` pairs only with residuals: its stacked carries and residuals are
    recomputed a segment at a time (loops/checkpoint.py), its ys are not.

    >>> import graphcomp as gc
    >>> with gc.Graph():
    ...     xs = gc.placeholder(("T", 2), "float64", name="xs")
    ...     h, hs = gc.scan(lambda c, x: (gc.tanh(c + x),) * 2, gc.constant([0.0, 0.0]), xs)
    >>> shared_stacks(h.node.inputs[0].attrs["body"], {1, 2})  # hs, and the carries' stack
    {2: 1}
    """
    n_carry, n_ys = len(body.carry_out), len(body.y_out)
    first = n_carry + n_ys  # the first stacked carry
    partners = [(n_carry + k, y) for k, y in enumerate(body.y_out)
                if n_carry + k in read and checkpoint is None]
    partners += [(first + n_carry + r, node) for r, node in enumerate(body.residuals)
                 if first + n_carry + r in read]
    shared: dict[int, int] = {}
    for i, leaf in enumerate(body.carry_out):
        if first + i not in read:
            continue
        for index, node in partners:
            if node is leaf and index not in shared.values():
                shared[first + i] = index
                break
    return shared


def is_recomputed(node: Node) -> bool:
    """Whether ``node`` is a stacked residual of a checkpointed scan: a stream the backends
    recompute one segment at a time (``loops/checkpoint.py``), read only by scans."""
    return is_residual(node) and node.inputs[0].attrs.get("checkpoint") is not None
