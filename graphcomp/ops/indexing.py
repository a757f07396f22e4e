"""Gather and its adjoint: ``take`` (embedding lookup) and ``scatter_add``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphcomp.errors import DTypeError, InputError, ShapeError
from graphcomp.ir import DimTable, Node, shape_str
from graphcomp.ops import functions as F
from graphcomp.ops.registry import OpDef, Sample, register


def _check_indices(indices: Node) -> None:
    if indices.dtype.kind != "i":
        raise DTypeError(f"indices must be int32 or int64, got {indices.dtype}")


def _take_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    x, indices = nodes
    _check_indices(indices)
    axis = attrs["axis"]
    if isinstance(dims.resolve(x.shape[axis]), str):
        raise ShapeError("cannot take along a symbolic dimension")
    return x.shape[:axis] + indices.shape + x.shape[axis + 1 :], x.dtype


def _bounds_checked(indices: np.ndarray, size: int, op: str) -> np.ndarray:
    if indices.size and (indices.min() < -size or indices.max() >= size):
        bad = indices[(indices < -size) | (indices >= size)].flat[0]
        raise InputError(f"{op}: index {bad} is out of range for an axis of size {size}")
    return indices


def _take_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    x, indices = xs
    axis = attrs["axis"]
    return np.take(x, _bounds_checked(indices, x.shape[axis], "take"), axis=axis)


def _scatter_add_rule(nodes: Sequence[Node], attrs: dict, dims: DimTable) -> tuple:
    base, indices, updates = nodes
    _check_indices(indices)
    axis = attrs["axis"]
    expected = base.shape[:axis] + indices.shape + base.shape[axis + 1 :]
    if len(expected) != updates.ndim:
        raise ShapeError(f"updates must have shape {shape_str(expected)}")
    for a, b in zip(expected, updates.shape, strict=True):
        dims.unify(a, b)
    if updates.dtype != base.dtype:
        raise DTypeError(f"updates dtype {updates.dtype} differs from base dtype {base.dtype}")
    return base.shape, base.dtype


def _scatter_add_impl(xs: Sequence[np.ndarray], attrs: dict, shape: tuple) -> np.ndarray:
    base, indices, updates = xs
    axis = attrs["axis"]
    out = np.array(base, copy=True)
    k = indices.ndim
    moved = np.moveaxis(updates, list(range(axis, axis + k)), list(range(k)))
    target = np.moveaxis(out, axis, 0)
    np.add.at(target, _bounds_checked(indices, base.shape[axis], "scatter_add"), moved)
    return out


def _vjp_take(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    x, indices = ins
    return [F.scatter_add(F.zeros_like(x), indices, g, axis=attrs["axis"]), None]


def _vjp_scatter_add(g: Any, out: Any, ins: Sequence, attrs: dict) -> list:
    indices = ins[1]
    return [g, None, F.take(g, indices, axis=attrs["axis"])]


def _take_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    table = rng.standard_normal((6, 3)).astype(dtype)
    return [
        Sample(
            (table, np.array([0, 5, 2, 2], dtype="int64")), {"axis": 0}, symbolic=({}, {0: "N"})
        ),
        Sample((table, np.array([[1, 0], [2, 2]], dtype="int32")), {"axis": 1}),
    ]


def _scatter_samples(rng: np.random.Generator, dtype: np.dtype) -> list[Sample]:
    base = rng.standard_normal((5, 3)).astype(dtype)
    indices = np.array([0, 4, 4, 1], dtype="int64")
    updates = rng.standard_normal((4, 3)).astype(dtype)
    return [Sample((base, indices, updates), {"axis": 0})]


register(
    OpDef(
        name="take",
        kind="index",
        infer=_take_rule,
        numpy_impl=_take_impl,
        vjp=_vjp_take,
        samples=_take_samples,
        doc="gather along an axis (numpy take; negative indices count from the end)",
    )
)

register(
    OpDef(
        name="scatter_add",
        kind="index",
        infer=_scatter_add_rule,
        numpy_impl=_scatter_add_impl,
        vjp=_vjp_scatter_add,
        samples=_scatter_samples,
        doc="base with updates added at indices along an axis (repeated indices accumulate)",
    )
)
