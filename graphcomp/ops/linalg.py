"""Linear algebra: matmul (batched, with numpy's broadcasting of the batch dimensions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp import dtypes
from graphcomp.errors import DTypeError, ShapeError
from graphcomp.ir import DimMismatch, DimTable, Node
from graphcomp.ops import functions as F
from graphcomp.ops.registry import OpDef, Sample, register


def _matmul_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    a, b = nodes
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError("the matmul primitive needs operands of rank >= 2")
    if a.dtype != b.dtype or not dtypes.is_float(a.dtype):
        raise DTypeError(f"matmul needs float operands of one dtype, got {a.dtype} and {b.dtype}")
    k_a, k_b = dims.resolve(a.shape[-1]), dims.resolve(b.shape[-2])
    try:
        dims.unify(k_a, k_b)
    except DimMismatch:
        raise ShapeError(
            f"inner dimensions differ: {k_a} (last of a) vs {k_b} (first of b)"
        ) from None
    batch = dims.broadcast(a.shape[:-2], b.shape[:-2])
    return batch + (a.shape[-2], b.shape[-1]), a.dtype


def _swap_last(x: Any) -> Any:
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return F.transpose(x, perm)


def _vjp_matmul(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    a, b = ins
    grad_a = F.unbroadcast(F.matmul(g, _swap_last(b)), a.shape)
    if b.ndim == 2 and a.ndim > 2:
        # A weight shared by every matrix of a batch (x[T,B,K] @ W[K,N]): one product over
        # all rows, [T*B,K]^T @ [T*B,N], instead of T products and a sum over T.
        rows_a = F.reshape(a, (-1, a.shape[-1]))
        rows_g = F.reshape(g, (-1, g.shape[-1]))
        return [grad_a, F.matmul(F.transpose(rows_a, (1, 0)), rows_g)]
    return [grad_a, F.unbroadcast(F.matmul(_swap_last(a), g), b.shape)]


def _matmul_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    def n(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    return [
        Sample((n(3, 4), n(4, 5)), symbolic=({0: "N"}, {})),
        Sample((n(2, 3, 4), n(2, 4, 5))),
        Sample((n(2, 3, 4), n(4, 2))),
    ]


register(
    OpDef(
        name="matmul",
        kind="linalg",
        infer=_matmul_rule,
        numpy_impl=lambda xs, attrs, shape: np.matmul(xs[0], xs[1]),
        numpy_ufunc=np.matmul,
        vjp=_vjp_matmul,
        samples=_matmul_samples,
        doc="matrix product over the last two axes; leading axes broadcast",
    )
)
