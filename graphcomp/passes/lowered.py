"""The backend IR: a flat, mutable copy of a ``Program`` that passes rewrite freely.

Lowering copies each scheduled graph node into an ``LOp`` whose shape is canonical (symbols
resolved through the graph's ``DimTable``), so passes never touch the user's ``Graph``.

>>> # lp = lower(program); lp = eliminate_common(lp); kernels = plan_kernels(lp)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from graphcomp.ir import dim_factors

Dim = int | str
SOURCE_OPS = frozenset({"placeholder", "parameter", "constant"})
# Ops that passes create and backends implement, with no registry entry: ``copy`` (an
# elementwise identity into a buffer of its own), ``matmul_acc`` (alpha * a @ b + c), and
# ``im2col``/``col2im`` (a convolution's columns and their transpose, passes/convolution.py).
BACKEND_OPS = frozenset({"copy", "matmul_acc", "im2col", "col2im"})


@dataclass
class LOp:
    """One value of the lowered program: the op that computes it, or a source."""

    id: int
    op: str
    inputs: list[int]
    attrs: dict[str, Any]
    shape: tuple[Dim, ...]
    dtype: np.dtype
    labels: list[str] = field(default_factory=list)  # graph nodes it stands for: "%12 tanh"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_source(self) -> bool:
        return self.op in SOURCE_OPS

    def describe(self) -> str:
        return ", ".join(self.labels) or f"%{self.id} {self.op}"


@dataclass
class LoweredProgram:
    """Values in schedule order plus the program's interface.

    ``updates`` are (parameter value id, new value id) pairs; ``parameter_ids`` maps a
    parameter value to the graph node whose storage holds it.
    """

    ops: dict[int, LOp]
    inputs: list[int]
    outputs: list[int]
    updates: list[tuple[int, int]]
    symbols: list[str]
    graph_name: str = "graph"

    @property
    def roots(self) -> list[int]:
        """Values that must exist when the program ends: outputs and new parameter values."""
        return list(self.outputs) + [value for _, value in self.updates]

    def copy(self) -> LoweredProgram:
        """A copy a pass may rewrite: new ops, lists and attribute dicts. Attribute values
        (constants' arrays, tuples) are shared: passes replace them, never change them in
        place. Much cheaper than ``copy.deepcopy``, which copied every constant.

        >>> # result = lp.copy(); result.ops[7].inputs[0] = 3  # lp is untouched
        """
        ops = {i: replace(op, inputs=list(op.inputs), attrs=dict(op.attrs),
                          labels=list(op.labels)) for i, op in self.ops.items()}
        return replace(self, ops=ops, inputs=list(self.inputs), outputs=list(self.outputs),
                       updates=list(self.updates), symbols=list(self.symbols))

    def consumers(self) -> dict[int, list[int]]:
        """Distinct consumers of each value, in schedule order."""
        users: dict[int, list[int]] = {i: [] for i in self.ops}
        for op in self.ops.values():
            for source in dict.fromkeys(op.inputs):
                users[source].append(op.id)
        return users

    def parameters(self) -> list[int]:
        """Parameter values, in schedule order."""
        return [op.id for op in self.ops.values() if op.op == "parameter"]

    def constants(self) -> list[int]:
        """Constant values that are arrays (0-d constants become literals in kernels)."""
        return [op.id for op in self.ops.values() if op.op == "constant" and op.ndim > 0]


def size_key(shape: Sequence[Dim]) -> tuple[int, tuple[str, ...]]:
    """A shape's element count as (product of known sizes, sorted symbols).

    >>> size_key(("N", 4, 3))
    (12, ('N',))
    """
    known, symbols = 1, list[str]()
    for d in shape:
        coeff, factors = dim_factors(d)
        known *= coeff
        symbols += factors
    return known, tuple(sorted(symbols))


def concrete_size(key: tuple[int, tuple[str, ...]], binding: dict[str, int]) -> int:
    """Evaluate a ``size_key`` under a binding of the symbols."""
    known, symbols = key
    for s in symbols:
        known *= binding[s]
    return known
