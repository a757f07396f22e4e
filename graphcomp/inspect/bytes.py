"""Byte counts of values, symbolic in their dims: what residuals cost."""

from __future__ import annotations

from collections import Counter

from graphcomp.ir import Node
from graphcomp.loops import is_residual, stacked_leaf

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
    indices = {graph.node(i).attrs["index"] for i in graph.nx.successors(scan.id)
               if is_residual(graph.node(i))}
    per_step: ByteCount = Counter()
    for index in sorted(indices):
        per_step.update(stacked_bytes_per_step(scan, index))
    trip = graph.dims.resolve(scan.shape[0])
    total: ByteCount = Counter()
    for symbols, value in per_step.items():
        if isinstance(trip, int):
            total[symbols] += value * trip
        else:
            total[tuple(sorted((*symbols, trip)))] += value
    return dict(per_step), dict(total)


def stacked_bytes_per_step(scan: Node, index: int) -> ByteCount:
    """Bytes one step adds to output ``index`` of ``scan`` (a stacked y, carry or residual)."""
    return byte_count(stacked_leaf(scan, index))
