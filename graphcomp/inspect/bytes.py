"""Byte counts of values, symbolic in their dims: what residuals cost."""

from __future__ import annotations

from collections import Counter

from graphcomp.ir import Node
from graphcomp.loops import SCAN_OUTPUT, output_count, shared_stacks, stacked_leaf

# A byte count: {symbols: coefficient}; () is the static part. {(): 64, ("N",): 32} = 64 + 32*N.
ByteCount = dict[tuple[str, ...], int]


def byte_count(node: Node) -> ByteCount:
    """Bytes of ``node``'s value: ``{(): static}`` or ``{("N",): per_unit_of_N}`` etc."""
    coefficient, symbols = node.dtype.itemsize, []
    for d in node.graph.dims.resolve_shape(node.shape):
        if isinstance(d, int):
            coefficient *= d
        else:
            symbols.append(d)
    return {tuple(sorted(symbols)): coefficient}


def format_bytes(count: ByteCount) -> int | str:
    """An int when no symbol is involved, else a formula: ``"64 + 256*N"``."""
    terms = {k: v for k, v in count.items() if v}
    if all(symbols == () for symbols in terms):
        return int(terms.get((), 0))
    parts = []
    for symbols in sorted(terms, key=lambda s: (len(s), s)):
        value = terms[symbols]
        parts.append("*".join([str(value), *symbols]) if symbols else str(value))
    return " + ".join(parts)


def scan_residual_bytes(scan: Node) -> tuple[ByteCount, ByteCount]:
    """(per step, in total) bytes a scan stores for gradients: the stacked carries and body
    values (``scan_output`` residuals) that nodes of its graph read, over the ``T`` steps.

    >>> import graphcomp as gc, numpy as np
    >>> with gc.Graph():
    ...     xs = gc.placeholder(("T", "B", 4), "float64", name="xs")
    ...     h0 = gc.placeholder(("B", 4), "float64", name="h0")
    ...     h, _ = gc.scan(lambda c, x: (gc.tanh(c + x), None), h0, xs)
    ...     g = gc.grad(gc.sum(h), h0)
    >>> [format_bytes(b) for b in scan_residual_bytes(h.node.inputs[0])]
    ['32*B', '32*B*T']
    """
    graph = scan.graph
    read = {graph.node(i).attrs["index"] for i in graph.nx.successors(scan.id)
            if graph.node(i).op == SCAN_OUTPUT}
    indices = {i for i in read if i >= sum(output_count(scan))}  # the residuals
    shared = shared_carry_stacks(scan)
    per_step: ByteCount = Counter()
    for index in sorted(indices - shared):
        per_step.update(stacked_bytes_per_step(scan, index))
    k = scan.attrs.get("checkpoint")
    total: ByteCount = Counter()
    if k is not None:  # checkpoints and one recomputed segment (loops/checkpoint.py)
        total.update(checkpoint_bytes(scan) if indices else {})
        total.update(_times(per_step, _segment_length(scan)))
    else:
        total.update(_times(per_step, graph.dims.resolve(scan.shape[0])))
    for index in shared:  # one row more in the buffer (or segment) the stack shares
        total.update(stacked_bytes_per_step(scan, index))
    return dict(per_step), {s: v for s, v in total.items() if v}


def shared_carry_stacks(scan: Node) -> set[int]:
    """Output indices of ``scan``'s stacked carries kept in the buffer of another stack read
    (``shared_stacks``: rnn's ``h_{t-1}`` in the buffer of ``h_t``, one row longer; with
    ``checkpoint=k``, in its recomputed segment): each adds one row in all, none per step."""
    graph = scan.graph
    read = {graph.node(i).attrs["index"] for i in graph.nx.successors(scan.id)
            if graph.node(i).op == SCAN_OUTPUT}
    return set(shared_stacks(scan.attrs["body"], read, scan.attrs.get("checkpoint")))


def checkpoint_bytes(scan: Node) -> ByteCount:
    """Bytes of the carries a scan with ``checkpoint=k`` keeps: every carry leaf at every
    ``k``-th step, ``ceil(T/k)`` of them (``"ceil(T/k)"`` stands for that count when ``T``
    is symbolic)."""
    count: ByteCount = Counter()
    for leaf in scan.attrs["body"].carry_in:
        count.update(byte_count(leaf))
    trip, k = scan.graph.dims.resolve(scan.shape[0]), scan.attrs["checkpoint"]
    return _times(count, -(-trip // k) if isinstance(trip, int) else f"ceil({trip}/{k})")


def recomputed_bytes(node: Node) -> ByteCount:
    """Bytes a stacked residual of a checkpointed scan holds: one segment of ``min(T, k)``
    steps (``"min(T,k)"`` when ``T`` is symbolic)."""
    per_step = stacked_bytes_per_step(node.inputs[0], node.attrs["index"])
    return _times(per_step, _segment_length(node.inputs[0]))


def _segment_length(scan: Node) -> int | str:
    trip, k = scan.graph.dims.resolve(scan.shape[0]), scan.attrs["checkpoint"]
    return min(trip, k) if isinstance(trip, int) else f"min({trip},{k})"


def _times(count: ByteCount, factor: int | str) -> ByteCount:
    """``count`` times ``factor``, an int or a symbol."""
    total: ByteCount = Counter()
    for symbols, value in count.items():
        if isinstance(factor, int):
            total[symbols] += value * factor
        else:
            total[tuple(sorted((*symbols, factor)))] += value
    return dict(total)


def stacked_bytes_per_step(scan: Node, index: int) -> ByteCount:
    """Bytes one step adds to output ``index`` of ``scan`` (a stacked y, carry or residual)."""
    return byte_count(stacked_leaf(scan, index))
