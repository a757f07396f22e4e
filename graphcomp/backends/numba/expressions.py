"""Scalar code for fused loop bodies: values at an index, through views and broadcasting.

A fused kernel evaluates its root at a tuple of index expressions (loop variables, or ``0``
on a broadcast axis). ``ExpressionWriter.value_at`` walks back through inlined elementwise ops
and views, emitting one statement per op (``t3 = t1 * t2  # %12 multiply``) and reading
materialised buffers at the mapped index. Identical (value, index) pairs are computed once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from graphcomp.backends.numba.op_table import OpKernel, kernel_for
from graphcomp.errors import CompileError
from graphcomp.ir import dim_factors
from graphcomp.passes.lowered import LOp, LoweredProgram

Index = tuple[str, ...]
DTYPE_SUFFIX = {"float32": "f32", "float64": "f64"}
_COPY = OpKernel("elementwise", "{0}", note="a copy made by a pass (not a registry op)")


def literal(value: float | np.number | np.bool_, dtype: np.dtype) -> str:
    """A typed scalar literal: ``np.float32(0.5)`` (a bare Python float would promote f32).

    >>> literal(0.5, np.dtype("float32"))
    'np.float32(0.5)'
    """
    if dtype == np.dtype("bool"):
        return "True" if bool(value) else "False"
    if dtype.kind == "f":
        v = float(value)
        if math.isnan(v):
            text = "np.nan"
        elif math.isinf(v):
            text = "np.inf" if v > 0 else "-np.inf"
        else:
            text = repr(v)
        return f"np.{dtype.name}({text})"
    return f"np.{dtype.name}({int(value)})"


def broadcast_index(index: Index, from_shape: Sequence, to_shape: Sequence) -> Index:
    """The index into an operand of ``from_shape`` broadcast to ``to_shape`` (numpy rules)."""
    offset = len(to_shape) - len(from_shape)
    result = []
    for axis, d in enumerate(from_shape):
        target = to_shape[axis + offset]
        result.append("0" if d == 1 and target != 1 else index[axis + offset])
    return tuple(result)


def _affine(start: int, step: int, var: str) -> str:
    if var == "0":
        return str(start)
    term = var if step == 1 else f"{step} * {var}"
    return term if start == 0 else f"{start} + {term}"


class ExpressionWriter:
    """Emits the statements of one loop body.

    ``read(value_id, index)`` returns how to read a materialised value (set by the kernel
    writer: a parameter name and its index style); ``inlined`` is the set of values computed
    inside this kernel.
    """

    def __init__(self, lp: LoweredProgram, inlined: set[int],
                 read: Callable[[int, Index], str], functions: set[str],
                 flat: bool = False) -> None:
        self.lp = lp
        self.flat = flat  # one loop over the flattened root: operands are same-shape or size 1
        self.inlined = inlined
        self.read = read
        self.functions = functions  # fast-math helpers the body calls (names)
        self.lines: list[tuple[str, str]] = []  # (statement, comment)
        self.uses_dims = False
        self._memo: dict[tuple[int, Index], str] = {}
        self._count = 0

    def _temp(self, code: str, comment: str) -> str:
        name = f"t{self._count}"
        self._count += 1
        self.lines.append((f"{name} = {code}", comment))
        return name

    def value_at(self, value_id: int, index: Index, force: bool = False) -> str:
        """A name (or literal) holding ``value_id`` at ``index``; emits what it needs."""
        key = (value_id, index)
        if key in self._memo:
            return self._memo[key]
        op = self.lp.ops[value_id]
        if op.op == "constant" and all(d == 1 for d in op.shape):
            result = literal(op.attrs["value"].item(), op.dtype)  # a single element: a literal
        elif value_id not in self.inlined and not force:
            result = self._temp(self.read(value_id, index), op.describe())
        elif op.op == "dim_size":
            result = self._dim_size(op)
        elif op.op in ("transpose", "broadcast_to", "slice"):
            result = self.value_at(op.inputs[0], self._view_index(op, index))
        else:
            result = self._elementwise(op, index)
        self._memo[key] = result
        return result

    def _view_index(self, op: LOp, index: Index) -> Index:
        source = self.lp.ops[op.inputs[0]]
        if op.op == "broadcast_to":
            if self.flat:  # flat loops only broadcast single elements
                return ("0",) if all(d == 1 for d in source.shape) else index
            return broadcast_index(index, source.shape, op.shape)
        if op.op == "transpose":
            mapped = [""] * len(index)
            for out_axis, in_axis in enumerate(op.attrs["perm"]):
                mapped[in_axis] = index[out_axis]
            return tuple(mapped)
        starts, steps = op.attrs["starts"], op.attrs["steps"]
        return tuple(_affine(s, t, v) for s, t, v in zip(starts, steps, index, strict=True))

    def _operand_index(self, index: Index, from_shape: Sequence, to_shape: Sequence) -> Index:
        if self.flat:
            return index if tuple(from_shape) == tuple(to_shape) else ("0",)
        return broadcast_index(index, from_shape, to_shape)

    def _dim_size(self, op: LOp) -> str:
        factors = []
        for d in op.attrs["dims"]:
            coeff, symbols = dim_factors(d)
            self.uses_dims = self.uses_dims or bool(symbols)
            factors += [f"dims[{self.lp.symbols.index(s)}]" for s in symbols]
            factors += [str(coeff)] if coeff != 1 or not symbols else []
        product = " * ".join(factors) or "1"
        return self._temp(f"np.{op.dtype.name}({product})", op.describe())

    def _elementwise(self, op: LOp, index: Index) -> str:
        entry = _COPY if op.op == "copy" else kernel_for(op.op, op.describe())
        if entry.kind != "elementwise":
            raise CompileError(f"{op.describe()} runs as {entry.kind!r}, not in a loop body")
        template = entry.template
        if op.op == "cast" and op.dtype == np.dtype("bool"):
            template = "({0} != 0)"
        args = [self.value_at(i, self._operand_index(index, self.lp.ops[i].shape, op.shape))
                for i in op.inputs]
        helper = ""
        if entry.fastmath is not None:
            helper = entry.helper(self.lp.ops[op.inputs[0]].dtype)
            self.functions.add(helper)
        code = template.format(*args, to=op.dtype.name, dtype=op.dtype.name, fastmath=helper)
        return self._temp(code, op.describe())
